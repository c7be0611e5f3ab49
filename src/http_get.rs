//! One HTTP/1.1 GET over a stream already connected (plain TCP or TLS): the request with its Host and
//! extra headers, the response with its body streamed. Used by the API server towards kubelets and by
//! the kubelet's HTTP probes.

use tokio::io::{AsyncRead, AsyncWrite};

/// Sends `GET path` on `stream`; `host` is the Host header.
pub async fn get<S>(
    stream: S,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "HTTP client connection ended");
        }
    });
    let mut request = http::Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    sender.send_request(request).await.map_err(|e| e.to_string())
}
