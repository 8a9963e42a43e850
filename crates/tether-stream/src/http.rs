//! Serving a [`RemoteFile`] to local players over HTTP on 127.0.0.1, with `Range` support.
//!
//! The URL carries a random 128-bit token (`http://127.0.0.1:PORT/TOKEN/NAME`), compared in
//! constant time; a request without it is answered 404, so other users of the machine, who can
//! reach the port but not read the URL, get nothing. Only `GET` and `HEAD`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::reader::RemoteFile;

/// HTTP connections served at once; more wait to be accepted.
pub const MAX_HTTP_CONNECTIONS: usize = 16;

/// Bytes read from the remote file per body frame.
const FRAME_LEN: usize = 64 * 1024;

/// A running HTTP server for one remote file; dropping it (or [`HttpServer::stop`]) stops it.
#[derive(Debug)]
pub struct HttpServer {
    url: String,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl HttpServer {
    /// Serves `file` on 127.0.0.1:`port` (0: any free port) as `name` (the URL's last part,
    /// which players use to guess the format).
    pub async fn start(file: RemoteFile, name: &str, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let addr = listener.local_addr()?;
        let mut token = [0u8; 16];
        getrandom::fill(&mut token).map_err(std::io::Error::other)?;
        let token = hex::encode(token);
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let url = format!("http://{addr}/{token}/{name}");
        let stop = CancellationToken::new();
        let site = Arc::new(Site {
            size: file.size(),
            file: parking_lot::Mutex::new(file),
            token,
            content_type: content_type(&name),
        });
        tokio::spawn(accept_loop(listener, site, stop.clone()));
        Ok(Self { url, addr, stop })
    }

    /// The URL to give a player (it holds the token).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; connections being served end with their requests.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What every request is answered from.
struct Site {
    /// Only to make readers from (a reader is `Send`, not `Sync`).
    file: parking_lot::Mutex<RemoteFile>,
    size: u64,
    token: String,
    content_type: &'static str,
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>, stop: CancellationToken) {
    let places = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let Ok(place) = Arc::clone(&places).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                debug!(%error, "an HTTP connection could not be accepted");
                continue;
            }
        };
        let site = Arc::clone(&site);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let site = Arc::clone(&site);
                async move { Ok::<_, Infallible>(answer(&site, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                served = connection => if let Err(error) = served {
                    debug!(%error, "an HTTP connection ended with an error");
                },
                () = stop.cancelled() => {}
            }
            drop(place);
        });
    }
}

/// A response body: the file's bytes as they are verified, or nothing.
type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The answer to one request.
fn answer(site: &Site, request: &Request<Incoming>) -> Response<Body> {
    if !token_matches(request.uri().path(), &site.token) {
        return status(StatusCode::NOT_FOUND);
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    };
    let size = site.size;
    let range = request
        .headers()
        .get(RANGE)
        .and_then(|value| value.to_str().ok())
        .map(|value| parse_range(value, size));
    let (code, start, end) = match range {
        None | Some(RangeAsked::Ignored) => (StatusCode::OK, 0, size),
        Some(RangeAsked::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(RangeAsked::Unsatisfiable) => {
            let mut response = status(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let len = end - start;
    let body = if head || len == 0 {
        empty()
    } else {
        let reader = site.file.lock().reader_at(start).take(len);
        let frames =
            ReaderStream::with_capacity(reader, FRAME_LEN).map(|read| read.map(Frame::data));
        BodyExt::boxed_unsync(StreamBody::new(frames))
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(site.content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if code == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end.saturating_sub(1)))
    {
        headers.insert(CONTENT_RANGE, value);
    }
    response
}

fn empty() -> Body {
    BodyExt::boxed_unsync(Empty::new().map_err(|never: Infallible| match never {}))
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = code;
    response
}

/// Whether the path's first segment is the token (compared in constant time).
fn token_matches(path: &str, token: &str) -> bool {
    let given = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .next()
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    /// Bytes `start..end` (end exclusive).
    Bytes(u64, u64),
    /// Nothing of the file: answered 416.
    Unsatisfiable,
    /// Not one byte range understood here: the whole file is sent.
    Ignored,
}

/// Reads one `bytes=` range (`a-b`, `a-`, `-n`) of a file of `size` bytes; several ranges or
/// another unit are ignored (RFC 9110 lets a server send the whole file instead).
fn parse_range(value: &str, size: u64) -> RangeAsked {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsked::Ignored;
    };
    if spec.contains(',') {
        return RangeAsked::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::Ignored;
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => RangeAsked::Ignored,
        (true, false) => match number(last) {
            Some(0) => RangeAsked::Unsatisfiable,
            Some(suffix) if size > 0 => RangeAsked::Bytes(size.saturating_sub(suffix), size),
            Some(_) => RangeAsked::Unsatisfiable,
            None => RangeAsked::Ignored,
        },
        (false, open) => {
            let Some(start) = number(first) else {
                return RangeAsked::Ignored;
            };
            let end = if open {
                Some(size)
            } else {
                number(last).map(|last| last.saturating_add(1).min(size))
            };
            match end {
                None => RangeAsked::Ignored,
                Some(_) if start >= size => RangeAsked::Unsatisfiable,
                Some(end) if end <= start => RangeAsked::Ignored,
                Some(end) => RangeAsked::Bytes(start, end),
            }
        }
    }
}

/// The content type players expect for a file named `name`.
fn content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("mkv") => "video/x-matroska",
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("ts") => "video/mp2t",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        Some("ogg" | "oga") => "audio/ogg",
        Some("flac") => "audio/flac",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn ranges() {
        use RangeAsked::{Bytes, Ignored, Unsatisfiable};
        assert_eq!(parse_range("bytes=0-99", 1000), Bytes(0, 100));
        assert_eq!(parse_range("bytes=900-", 1000), Bytes(900, 1000));
        assert_eq!(parse_range("bytes=-100", 1000), Bytes(900, 1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Bytes(0, 1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), Bytes(990, 1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignored);
        assert_eq!(parse_range("items=0-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=x-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=-", 1000), Ignored);
    }

    #[test]
    fn the_token_is_the_first_segment() {
        let token = "00112233445566778899aabbccddeeff";
        assert!(token_matches(&format!("/{token}/video.mp4"), token));
        assert!(token_matches(&format!("/{token}"), token));
        assert!(!token_matches("/video.mp4", token));
        assert!(!token_matches("/", token));
        assert!(!token_matches(
            &format!("/{}/video.mp4", &token[1..]),
            token
        ));
        assert!(!token_matches(&format!("/x/{token}"), token));
    }
}
