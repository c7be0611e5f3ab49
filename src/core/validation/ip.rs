//! IP address validation with upstream's strict rules and messages
//! (`IsValidIP` of k8s.io/apimachinery/pkg/util/validation): the address must
//! parse (leniently, as Kubernetes' legacy parser does), must not have leading
//! zeros, must not be IPv4-mapped IPv6, and must be written canonically.

/// An address as the lenient (legacy) parser sees it.
struct Parsed {
    /// The 16-byte form (IPv4 is stored IPv4-mapped, as Go's net.IP does).
    bytes: [u8; 16],
    /// The text was IPv6 (contained ':' before any '.').
    v6_text: bool,
    /// The text is also accepted by the strict parser: no IPv4 octet with a
    /// leading zero or more than three digits, no IPv6 group of more than four
    /// hex digits.
    strict: bool,
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Leading decimal digits of `s`: (value, digits used); `None` without a digit
/// or once the value reaches 2^24, as Go's `dtoi`.
fn dtoi(s: &[u8]) -> Option<(u32, usize)> {
    let mut n: u32 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        n = n * 10 + u32::from(s[i] - b'0');
        if n >= 0x00ff_ffff {
            return None;
        }
        i += 1;
    }
    (i > 0).then_some((n, i))
}

/// Leading hex digits of `s`, as Go's `xtoi`.
fn xtoi(s: &[u8]) -> Option<(u32, usize)> {
    let mut n: u32 = 0;
    let mut i = 0;
    while i < s.len() {
        let d = match s[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        n = n * 16 + u32::from(d);
        if n >= 0x00ff_ffff {
            return None;
        }
        i += 1;
    }
    (i > 0).then_some((n, i))
}

/// Dotted-quad parse; `strict` is cleared on a non-canonical octet.
fn parse_v4(mut s: &[u8], strict: &mut bool) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        if i > 0 {
            s = s.strip_prefix(b".")?;
        }
        let (n, used) = dtoi(s)?;
        if n > 0xff {
            return None;
        }
        if used > 3 || (used > 1 && s[0] == b'0') {
            *strict = false;
        }
        *slot = u8::try_from(n).ok()?;
        s = &s[used..];
    }
    s.is_empty().then_some(out)
}

fn parse_v6(mut s: &[u8], strict: &mut bool) -> Option<[u8; 16]> {
    let mut ip = [0u8; 16];
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Some(ip);
        }
    }
    let mut i = 0;
    while i < 16 {
        let (n, used) = xtoi(s)?;
        if n > 0xffff {
            return None;
        }
        if s.get(used) == Some(&b'.') {
            if (ellipsis.is_none() && i != 12) || i + 4 > 16 {
                return None;
            }
            let v4 = parse_v4(s, strict)?;
            ip[i..i + 4].copy_from_slice(&v4);
            s = &[];
            i += 4;
            break;
        }
        if used > 4 {
            *strict = false;
        }
        ip[i] = u8::try_from(n >> 8).ok()?;
        ip[i + 1] = u8::try_from(n & 0xff).ok()?;
        i += 2;
        s = &s[used..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return None;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return None;
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return None;
    }
    if i < 16 {
        let e = ellipsis?;
        let n = 16 - i;
        ip.copy_within(e..i, e + n);
        ip[e..e + n].fill(0);
    } else if ellipsis.is_some() {
        return None;
    }
    Some(ip)
}

fn parse_sloppy(value: &str) -> Option<Parsed> {
    let s = value.as_bytes();
    let mut strict = true;
    match s.iter().find(|b| **b == b'.' || **b == b':')? {
        b'.' => {
            let v4 = parse_v4(s, &mut strict)?;
            let mut bytes = [0u8; 16];
            bytes[..12].copy_from_slice(&V4_MAPPED_PREFIX);
            bytes[12..].copy_from_slice(&v4);
            Some(Parsed { bytes, v6_text: false, strict })
        }
        _ => {
            let bytes = parse_v6(s, &mut strict)?;
            Some(Parsed { bytes, v6_text: true, strict })
        }
    }
}

/// Go's `net.IP.String()`: dotted quad for IPv4 (and IPv4-mapped), RFC 5952
/// for IPv6 (lowercase, longest run of two or more zero groups collapsed).
fn canonical(bytes: &[u8; 16]) -> String {
    if bytes[..12] == V4_MAPPED_PREFIX {
        return format!("{}.{}.{}.{}", bytes[12], bytes[13], bytes[14], bytes[15]);
    }
    let groups: Vec<u16> = bytes.chunks(2).map(|c| (u16::from(c[0]) << 8) | u16::from(c[1])).collect();
    let (mut best_start, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        let mut j = i;
        while j < 8 && groups[j] == 0 {
            j += 1;
        }
        if j - i > best_len {
            best_start = i;
            best_len = j - i;
        }
        i = j.max(i + 1);
    }
    if best_len < 2 {
        best_start = usize::MAX;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            out.push_str("::");
            i += best_len;
            continue;
        }
        if !out.is_empty() && !out.ends_with("::") {
            out.push(':');
        }
        out.push_str(&format!("{:x}", groups[i]));
        i += 1;
    }
    out
}

/// Upstream's `IsValidIP` (strict): the messages for one address.
pub fn is_valid_ip(value: &str) -> Vec<String> {
    let Some(parsed) = parse_sloppy(value) else {
        return vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()];
    };
    if !parsed.strict {
        return vec!["must not have leading 0s".to_string()];
    }
    if parsed.v6_text && parsed.bytes[..12] == V4_MAPPED_PREFIX {
        return vec!["must not be an IPv4-mapped IPv6 address".to_string()];
    }
    let canon = canonical(&parsed.bytes);
    if canon != value {
        return vec![format!("must be in canonical form (\"{canon}\")")];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::is_valid_ip;

    const INVALID: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

    #[test]
    fn valid_addresses() {
        for ip in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "1234::abcd",
            "::",
            "::1",
            "1::",
            "2001:db8::1:0:0:1",
            "2001:0:0:1::1",
            "1:0:0:1::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::102:304",
            "1:2:3:4:5:6:0:8",
            "1::2:0:0:3",
        ] {
            assert!(is_valid_ip(ip).is_empty(), "{ip}: {:?}", is_valid_ip(ip));
        }
    }

    #[test]
    fn non_canonical() {
        for (ip, canon) in [
            ("0:0:0:0:0:0:0:0", "::"),
            ("0001:002:03:4::", "1:2:3:4::"),
            ("1234::ABCD", "1234::abcd"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("1:0::1", "1::1"),
            ("::1.2.3.4", "::102:304"),
            ("1:2:3:4:5:6::8", "1:2:3:4:5:6:0:8"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ] {
            assert_eq!(is_valid_ip(ip), vec![format!("must be in canonical form (\"{canon}\")")], "{ip}");
        }
    }

    #[test]
    fn strict_rejections() {
        let lead = vec!["must not have leading 0s".to_string()];
        assert_eq!(is_valid_ip("1.1.1.01"), lead);
        assert_eq!(is_valid_ip("0001.2.3.4"), lead);
        assert_eq!(is_valid_ip("00001::"), lead);
        assert_eq!(is_valid_ip("::ffff:1.2.3.04"), lead);
        let mapped = vec!["must not be an IPv4-mapped IPv6 address".to_string()];
        assert_eq!(is_valid_ip("::ffff:1.1.1.1"), mapped);
        assert_eq!(is_valid_ip("::ffff:101:101"), mapped);
    }

    #[test]
    fn garbage() {
        for ip in [
            "",
            "aaaaaaa",
            "myhost.mydomain",
            "1.2.3.0/24",
            "1.2.3.400",
            "-1.0.0.0",
            "2001:db8::10005",
            "1.2.3.4:80",
            "[2001:db8::1]",
            "1.2.3",
            "1.2.3.4.5",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "fe80::1%eth0",
            ":1",
            "1:",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:8::",
            "1.2.3.4::",
            "::1.2.3.4.5",
            "1:2:3:4:5:6:7:1.2.3.4",
            "é.1.2.3",
            "99999999999.1.1.1",
        ] {
            assert_eq!(is_valid_ip(ip), vec![INVALID.to_string()], "{ip:?}");
        }
    }

    /// Every short string over an address-like alphabet is handled without
    /// panicking, and anything accepted is canonical.
    #[test]
    fn never_panics() {
        let alphabet = ["0", "1", "f", ":", ".", "%", "é", "255", "::"];
        let mut layer = vec![String::new()];
        for _ in 0..5 {
            layer = layer.iter().flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}"))).collect();
            for s in &layer {
                if is_valid_ip(s).is_empty() {
                    assert!(!s.contains('%') && !s.contains('é'), "{s}");
                }
            }
        }
    }
}
