//! HTTP mode: each stream POSTs the built-in text to the OpenAI-compatible
//! `/v1/audio/speech` (`pcm`, streamed body, HTTP/1.1) request after request until the level's
//! deadline, recording when each body chunk arrives.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;
use vv_audio::NATIVE_SAMPLE_RATE;

use super::clock::{Clock, IDLE_TIMEOUT, RETRY_PAUSE};
use super::codes;
use super::record::{ContextRecord, Frame, StreamRecord};
use super::target::Target;

/// Bytes per sample of `response_format: "pcm"` (16-bit little-endian, 24 kHz).
const BYTES_PER_SAMPLE: u64 = 2;
/// Most bytes read of an error response's body.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The model named in each request.
const MODEL: &str = "vibevoice-realtime-0.5b";

/// The request every stream of a level sends.
pub struct Plan {
    authority: String,
    uri: Uri,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    body: Bytes,
}

impl Plan {
    /// The request for `target` speaking `text`, with `voice` in the body and `api_key` as a bearer token.
    pub fn new(
        target: &Target,
        text: &str,
        voice: Option<&str>,
        api_key: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut body = json!({"model": MODEL, "input": text, "response_format": "pcm"});
        if let Some(voice) = voice {
            body["voice"] = json!(voice);
        }
        let authorization = api_key
            .map(|key| HeaderValue::try_from(format!("Bearer {key}")))
            .transpose()
            .context("--api-key cannot be sent in an HTTP header")?;
        Ok(Self {
            authority: target.authority().to_string(),
            uri: target
                .speech_path()
                .parse()
                .context("the URL's path is not a valid request path")?,
            host: HeaderValue::try_from(target.authority())
                .context("the URL's host cannot be sent in an HTTP header")?,
            authorization,
            body: Bytes::from(body.to_string()),
        })
    }

    /// A fresh copy of the request.
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        request
    }
}

/// Runs one stream until the deadline: requests back to back, with a pause after a failed one.
pub async fn stream(plan: Arc<Plan>, clock: Clock) -> StreamRecord {
    let mut record = StreamRecord::default();
    while !clock.is_over() {
        if let Err(code) = request(&plan, &clock, &mut record).await {
            record.error(code);
            clock.pause(RETRY_PAUSE).await;
        }
    }
    record.end = clock.end();
    record
}

/// The connection task, aborted when the request is over: a response dropped mid-body must
/// close its connection (each request has its own).
struct Connection(JoinHandle<Result<(), hyper::Error>>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a new connection, read to its end or to the deadline; `Err` with the error
/// code when it failed.
async fn request(plan: &Plan, clock: &Clock, record: &mut StreamRecord) -> Result<(), String> {
    // The stream's wall time starts with its first attempt, connection included.
    record.sent(clock.elapsed());
    let Some((mut sender, _connection)) = connect(plan, clock).await? else {
        return Ok(());
    };
    let mut context = ContextRecord::new(clock.elapsed(), NATIVE_SAMPLE_RATE);
    let result = exchange(plan, clock, &mut sender, &mut context).await;
    record.contexts.push(context);
    result
}

/// Opens a connection; `Ok(None)` when the deadline passed first.
async fn connect(
    plan: &Plan,
    clock: &Clock,
) -> Result<Option<(SendRequest<Full<Bytes>>, Connection)>, String> {
    let tcp = match timeout_at(
        clock.wake_at(IDLE_TIMEOUT),
        TcpStream::connect(plan.authority.as_str()),
    )
    .await
    {
        Err(_) => return silence(clock).map(|()| None),
        Ok(Err(_)) => return Err(codes::CONNECT_FAILED.into()),
        Ok(Ok(tcp)) => tcp,
    };
    // Latency matters more than packet count; failing to set it changes no result.
    let _ = tcp.set_nodelay(true);
    match timeout_at(clock.wake_at(IDLE_TIMEOUT), handshake(TokioIo::new(tcp))).await {
        Err(_) => silence(clock).map(|()| None),
        Ok(Err(_)) => Err(codes::CONNECT_FAILED.into()),
        Ok(Ok((sender, connection))) => Ok(Some((sender, Connection(tokio::spawn(connection))))),
    }
}

/// Sends the request and reads the streamed body into `context`.
async fn exchange(
    plan: &Plan,
    clock: &Clock,
    sender: &mut SendRequest<Full<Bytes>>,
    context: &mut ContextRecord,
) -> Result<(), String> {
    let response = match timeout_at(
        clock.wake_at(IDLE_TIMEOUT),
        sender.send_request(plan.request()),
    )
    .await
    {
        Err(_) => return silence(clock),
        Ok(Err(_)) => return Err(codes::CONNECTION_LOST.into()),
        Ok(Ok(response)) => response,
    };
    let (parts, mut body) = response.into_parts();
    if !parts.status.is_success() {
        let collected = timeout_at(
            clock.wake_at(IDLE_TIMEOUT),
            Limited::new(body, ERROR_BODY_LIMIT).collect(),
        )
        .await;
        let bytes = match collected {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        return Err(codes::http_error(parts.status.as_u16(), &bytes));
    }
    let mut bytes_received = 0u64;
    loop {
        match timeout_at(clock.wake_at(IDLE_TIMEOUT), body.frame()).await {
            Err(_) => return silence(clock),
            Ok(None) => return Ok(()),
            Ok(Some(Err(_))) => return Err(codes::CONNECTION_LOST.into()),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                if data.is_empty() {
                    continue;
                }
                // Whole samples completed by this chunk (a chunk may end inside a sample).
                let before = bytes_received / BYTES_PER_SAMPLE;
                bytes_received += data.len() as u64;
                context.frames.push(Frame {
                    at: clock.elapsed(),
                    samples: bytes_received / BYTES_PER_SAMPLE - before,
                });
            }
        }
    }
}

/// A wait ended with nothing received: fine at the deadline, else the idle timeout.
fn silence(clock: &Clock) -> Result<(), String> {
    if clock.is_over() {
        Ok(())
    } else {
        Err(codes::TIMEOUT.into())
    }
}
