//! The protobuf wire format, read without trusting it: varints (at most ten bytes), field keys,
//! length-delimited slices checked against what is left, fixed-width values, and skipping the
//! fields the schema does not know. Every failure is an `Err(reason)`, never a panic.

/// How a field's value is laid out on the wire. Groups (3, 4) are not accepted: no Kubernetes
/// message uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub(super) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over one message's bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err("truncated varint".into());
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint longer than ten bytes".into())
    }

    /// The next field's number and wire type.
    pub(super) fn key(&mut self) -> Result<(u32, WireType), String> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > 0x1fff_ffff {
            return Err(format!("invalid field number {number}"));
        }
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => return Err(format!("unsupported wire type {other} for field {number}")),
        };
        Ok((number as u32, wire_type))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(format!(
                "length {len} runs past the end ({} bytes left)",
                self.buf.len().saturating_sub(self.pos)
            ));
        };
        let slice = self.buf.get(self.pos..end).ok_or("length out of range")?;
        self.pos = end;
        Ok(slice)
    }

    /// A length-delimited value: the bytes of a string, a bytes field or an embedded message.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| format!("length {len} too large"))?;
        self.take(len)
    }

    pub(super) fn fixed32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        let array: [u8; 4] = bytes.try_into().map_err(|_| "truncated fixed32")?;
        Ok(u32::from_le_bytes(array))
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let array: [u8; 8] = bytes.try_into().map_err(|_| "truncated fixed64")?;
        Ok(u64::from_le_bytes(array))
    }

    /// Passes over a value of a field the schema does not know.
    pub(super) fn skip(&mut self, wire_type: WireType) -> Result<(), String> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_keys_and_lengths() {
        let mut r = Reader::new(&[0x96, 0x01, 0x0a, 0x02, b'h', b'i', 0x15, 1, 0, 0, 0]);
        assert_eq!(r.varint(), Ok(150));
        assert_eq!(r.key(), Ok((1, WireType::Len)));
        assert_eq!(r.bytes(), Ok(&b"hi"[..]));
        assert_eq!(r.key(), Ok((2, WireType::Fixed32)));
        assert_eq!(r.fixed32(), Ok(1));
        assert!(r.is_empty());
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint().is_err());
        assert!(Reader::new(&[0x00]).key().is_err(), "field number 0");
        assert!(Reader::new(&[0x0b]).key().is_err(), "group start");
        assert!(Reader::new(&[0x05, b'a']).bytes().is_err());
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(Reader::new(&huge).bytes().is_err());
        assert!(Reader::new(&[1, 2, 3]).fixed32().is_err());
        assert!(Reader::new(&[1, 2, 3]).fixed64().is_err());
        assert!(Reader::new(&[1, 2]).skip(WireType::Fixed64).is_err());
    }
}
