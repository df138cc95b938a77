//! A fault-injecting HTTP/1.1 proxy on a loopback port, for tests that sit it between the AWS SDK
//! and moto to prove how throttling, 5xx answers, dropped connections and slow answers are handled.
//!
//! Faults are armed per AWS operation (`GetResources`, `DescribeInstances`…), read from the
//! `X-Amz-Target` header (JSON protocols) or the `Action=` form parameter (query protocols: STS,
//! EC2). Every request is logged in arrival order, so tests can also assert what was *not* called.
//!
//! Architecture Invariant: the proxy is hand-written on a tokio `TcpListener` rather than axum,
//! because `Fault::Drop` must close the connection without any response, which a framework that
//! always answers cannot express. It speaks only the subset of HTTP/1.1 the SDK uses against a
//! plain-http loopback endpoint: one request at a time per connection, keep-alive, bodies sized by
//! `Content-Length` or chunked. It forwards only to the one upstream it was started with.
//! Dropping a `FaultProxy` aborts its accept loop, which owns every connection task, so no task
//! or socket outlives it.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::support::moto::Moto;

/// The largest request head (request line and headers) the proxy accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body the proxy accepts; SDK requests to moto are a few KiB.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How long a client may take to send the rest of a request once its first bytes arrived.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the upstream may take to answer one forwarded request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// The API version the EC2 SDK sends as `Version=`; STS sends `2011-06-15`.
const EC2_API_VERSION: &str = "2016-11-15";
/// Headers that describe one hop, not the message, and so are never passed on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the proxy does to a request whose operation has a fault armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 with the protocol's throttling error (`ThrottlingException`, STS `Throttling`, EC2
    /// `RequestLimitExceeded`); the request never reaches the upstream.
    Throttle,
    /// HTTP 500 with the protocol's internal error; the request never reaches the upstream.
    ServerError,
    /// Reads the whole request, then closes the connection without answering.
    Drop,
    /// Waits this long, then forwards the request as usual.
    Delay(Duration),
    /// Answers with this status and JSON body without asking the upstream: stands in for an
    /// operation the emulator does not implement (moto has no ListCostAllocationTags).
    Respond(u16, &'static str),
}

/// One request the proxy received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The AWS operation, e.g. `GetResources`, or `unknown`.
    pub operation: String,
    /// The status answered to the client; 0 when the connection was dropped (or is still open).
    pub status: u16,
    /// Whether an armed fault applied to this request (a delayed request counts).
    pub faulted: bool,
}

/// A running fault-injecting proxy in front of one upstream; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and forwards every request to `upstream` (e.g. `http://127.0.0.1:5000`)
    /// until a fault is armed.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the fault proxy");
        let port = listener
            .local_addr()
            .expect("a bound listener has a local address")
            .port();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .expect("a reqwest client with default TLS settings builds");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http,
            state: Mutex::default(),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy {
            port,
            shared,
            server,
        }
    }

    /// The base URL to point SDK clients at, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SDK config for clients that go through this proxy: its endpoint, `region`, the static dummy
    /// credentials `testing`/`testing`, and standard retries with `max_attempts` attempts in all
    /// and a 10 ms initial backoff, so retry tests stay quick.
    pub async fn sdk_config(&self, region: &str, max_attempts: u32) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "fault-proxy-test",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(max_attempts)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .use_fips(false)
            .use_dual_stack(false)
            .load()
            .await
    }

    /// Arms `fault` for requests of `operation`, replacing any fault armed for it: for the next
    /// `times` such requests, or until cleared when `None`. `Some(0)` disarms it.
    pub fn set_fault(&self, operation: &str, fault: Fault, times: Option<u32>) {
        let mut state = self.shared.state();
        if times == Some(0) {
            state.faults.remove(operation);
        } else {
            state.faults.insert(
                operation.to_owned(),
                Armed {
                    fault,
                    remaining: times,
                },
            );
        }
    }

    /// Like [`FaultProxy::set_fault`], for requests of `operation` signed for `region` only
    /// (read from the SigV4 credential scope); it takes precedence over a fault for the
    /// operation in every region.
    pub fn set_fault_in(&self, operation: &str, region: &str, fault: Fault, times: Option<u32>) {
        self.set_fault(&format!("{operation}@{region}"), fault, times);
    }

    /// Disarms every fault; the request log is kept.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    /// The bodies of the requests of `operation` received so far, in arrival order.
    pub fn bodies(&self, operation: &str) -> Vec<String> {
        self.shared
            .state()
            .bodies
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// How many requests of `operation` were received so far, faulted or not.
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .state()
            .seen
            .iter()
            .filter(|seen| seen.operation == operation)
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the listener and a `JoinSet` of every connection task; aborting it
        // drops both, which aborts the connection tasks and closes their sockets.
        self.server.abort();
    }
}

/// The region a request is signed for: the third part of the SigV4 credential scope
/// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`).
fn region_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2).map(str::to_owned)
}

/// The AWS operation a request calls: the part of `X-Amz-Target` after its last `.` (JSON
/// protocols), else the `Action` form parameter of the body (query protocols), else `unknown`.
pub fn operation_of(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
    {
        let operation = target.rsplit('.').next().unwrap_or(target).trim();
        if !operation.is_empty() {
            return operation.to_owned();
        }
    }
    form_param(body, "Action")
        .filter(|action| !action.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The operation of a REST request the tests fault: Lambda's GetFunction
/// (`GET /2015-03-31/functions/NAME`), which carries neither a target header nor a body,
/// Resource Explorer's Search (`POST /Search`), and the S3 bucket operations the reaper calls
/// (path-style `/{bucket}?…`).
fn rest_operation(method: &Method, target: &str) -> Option<String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Resource Explorer's search (no S3 bucket name has capitals).
    if *method == Method::POST && path == "/Search" {
        return Some("Search".to_owned());
    }
    if let Some(name) = path.strip_prefix("/2015-03-31/functions/") {
        return (*method == Method::GET && !name.is_empty() && !name.contains('/'))
            .then(|| "GetFunction".to_owned());
    }
    s3_bucket_operation(method, path, query)
}

/// An S3 request on a bucket (path-style, no key): its `x-id` when the SDK names it, else
/// what its method and sub-resource mean.
fn s3_bucket_operation(method: &Method, path: &str, query: &str) -> Option<String> {
    let bucket = path.strip_prefix('/')?.trim_end_matches('/');
    if bucket.is_empty() || bucket.contains('/') {
        return None;
    }
    let keys: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if let Some((_, id)) = keys.iter().find(|(k, _)| *k == "x-id") {
        return Some((*id).to_owned());
    }
    let has = |k: &str| keys.iter().any(|(key, _)| *key == k);
    let op = match *method {
        Method::POST if has("delete") => "DeleteObjects",
        Method::GET if has("tagging") => "GetBucketTagging",
        Method::PUT if has("tagging") => "PutBucketTagging",
        Method::GET if has("versions") => "ListObjectVersions",
        Method::GET if has("location") => "GetBucketLocation",
        Method::DELETE if keys.is_empty() => "DeleteBucket",
        _ => return None,
    };
    Some(op.to_owned())
}

/// The first value of `name` in an `application/x-www-form-urlencoded` body, undecoded except
/// for `+`; AWS action names and API versions need no more.
fn form_param(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.replace('+', " "))
}

/// The wire protocol of a request, which decides the shape of an injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `awsJson1_0`/`awsJson1_1`: `X-Amz-Target` and a JSON body (e.g. the tagging API).
    Json,
    /// `awsQuery` (e.g. STS): errors as `<ErrorResponse><Error>…`.
    Query,
    /// `ec2Query`: errors as `<Response><Errors><Error>…`.
    Ec2,
}

fn protocol_of(headers: &HeaderMap, body: &[u8]) -> Protocol {
    let json_content = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-amz-json"));
    if headers.contains_key("x-amz-target") || json_content {
        Protocol::Json
    } else if form_param(body, "Version").as_deref() == Some(EC2_API_VERSION) {
        Protocol::Ec2
    } else {
        Protocol::Query
    }
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The state; never held across an `.await`. A panicking test thread cannot leave it
    /// half-updated (every update is a single assignment or push), so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a request and consumes one use of the fault armed for its operation, if any, in one
    /// step so the log order is the order faults were handed out. Returns the log index.
    fn arrive(&self, operation: &str, region: Option<&str>) -> (usize, Option<Fault>) {
        let mut state = self.state();
        let scoped = region.map(|r| format!("{operation}@{r}"));
        let key = match scoped {
            Some(k) if state.faults.contains_key(&k) => k,
            _ => operation.to_owned(),
        };
        let fault = match state.faults.get_mut(&key) {
            None => None,
            Some(armed) => {
                let fault = armed.fault;
                if let Some(remaining) = armed.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(1);
                    if *remaining == 0 {
                        state.faults.remove(&key);
                    }
                }
                Some(fault)
            }
        };
        state.seen.push(Seen {
            operation: operation.to_owned(),
            status: 0,
            faulted: fault.is_some(),
        });
        (state.seen.len() - 1, fault)
    }

    fn answered(&self, index: usize, status: u16) {
        if let Some(seen) = self.state().seen.get_mut(index) {
            seen.status = status;
        }
    }

    /// Forwards `request` to the upstream; a failure to reach it becomes a 502.
    async fn forward(&self, request: Request) -> Reply {
        let url = format!("{}{}", self.upstream, origin_form(&request.target));
        let mut headers = request.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(HOST);
        headers.remove(CONTENT_LENGTH);
        let sent = self
            .http
            .request(request.method, url)
            .headers(headers)
            .body(request.body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Reply::bad_gateway(&e),
        };
        let status = response.status();
        let headers = response.headers().clone();
        match response.bytes().await {
            Ok(body) => Reply {
                status,
                headers,
                body: body.to_vec(),
            },
            Err(e) => Reply::bad_gateway(&e),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    faults: HashMap<String, Armed>,
    seen: Vec<Seen>,
    /// Each request's operation and body, in arrival order.
    bodies: Vec<(String, String)>,
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    /// Uses left; `None` until cleared.
    remaining: Option<u32>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Per-connection failures (e.g. the peer reset before accept); back off briefly in
            // case it is a lasting one such as running out of file descriptors.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Serves requests on one connection, one at a time, until the client closes it, asks to, a fault
/// drops it, or it sends something this proxy does not understand.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let request = match conn.read_request().await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                let reply = Reply::plain(StatusCode::BAD_REQUEST, &format!("fault proxy: {e}"));
                let _ = conn.write_reply(&reply, true).await;
                return;
            }
        };
        let mut operation = operation_of(&request.headers, &request.body);
        if operation == "unknown" {
            operation = rest_operation(&request.method, &request.target).unwrap_or(operation);
        }
        let protocol = protocol_of(&request.headers, &request.body);
        let close = request.close;
        let region = region_of(&request.headers);
        let (index, fault) = shared.arrive(&operation, region.as_deref());
        shared.state().bodies.push((
            operation.clone(),
            String::from_utf8_lossy(&request.body).into_owned(),
        ));
        let reply = match fault {
            // Returning drops the socket: the client sees the connection close, no response.
            Some(Fault::Drop) => return,
            Some(Fault::Throttle) => Reply::throttled(protocol),
            Some(Fault::ServerError) => Reply::server_error(protocol),
            Some(Fault::Respond(status, body)) => Reply::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                "application/x-amz-json-1.1",
                body.to_owned(),
            ),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                shared.forward(request).await
            }
            None => shared.forward(request).await,
        };
        shared.answered(index, reply.status.as_u16());
        if conn.write_reply(&reply, close).await.is_err() || close {
            return;
        }
    }
}

#[derive(Debug)]
struct Request {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The client asked for the connection to be closed after this exchange.
    close: bool,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: String) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert("x-amzn-requestid", HeaderValue::from_static("fault-proxy"));
        Reply {
            status,
            headers,
            body: body.into_bytes(),
        }
    }

    fn plain(status: StatusCode, message: &str) -> Reply {
        Reply::new(status, "text/plain", message.to_owned())
    }

    fn bad_gateway(error: &reqwest::Error) -> Reply {
        Reply::plain(
            StatusCode::BAD_GATEWAY,
            &format!("fault proxy: upstream failed: {error}"),
        )
    }

    fn throttled(protocol: Protocol) -> Reply {
        let (code, message) = match protocol {
            Protocol::Json => ("ThrottlingException", "Rate exceeded"),
            Protocol::Query => ("Throttling", "Rate exceeded"),
            Protocol::Ec2 => ("RequestLimitExceeded", "Request limit exceeded."),
        };
        Reply::aws_error(protocol, StatusCode::BAD_REQUEST, "Sender", code, message)
    }

    fn server_error(protocol: Protocol) -> Reply {
        let code = match protocol {
            Protocol::Json => "InternalFailure",
            Protocol::Query | Protocol::Ec2 => "InternalError",
        };
        Reply::aws_error(
            protocol,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Receiver",
            code,
            "injected",
        )
    }

    /// An error in the shape `protocol`'s SDK deserializers read the code from.
    fn aws_error(
        protocol: Protocol,
        status: StatusCode,
        fault_type: &str,
        code: &'static str,
        message: &str,
    ) -> Reply {
        match protocol {
            Protocol::Json => {
                let body = serde_json::json!({ "__type": code, "message": message }).to_string();
                let mut reply = Reply::new(status, "application/x-amz-json-1.1", body);
                reply
                    .headers
                    .insert("x-amzn-errortype", HeaderValue::from_static(code));
                reply
            }
            Protocol::Query => Reply::new(
                status,
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>{fault_type}</Type><Code>{code}</Code>\
                     <Message>{message}</Message></Error><RequestId>fault-proxy</RequestId>\
                     </ErrorResponse>"
                ),
            ),
            Protocol::Ec2 => Reply::new(
                status,
                "text/xml;charset=UTF-8",
                format!(
                    "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>\
                     </Error></Errors><RequestID>fault-proxy</RequestID></Response>"
                ),
            ),
        }
    }
}

/// One client connection and the bytes read from it but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// The next request, or `None` when the client closed the connection between requests.
    async fn read_request(&mut self) -> io::Result<Option<Request>> {
        // An idle keep-alive connection may wait here as long as the proxy lives; once a request
        // has begun it must arrive whole within the timeout.
        if self.buf.is_empty() && self.read_more().await? == 0 {
            return Ok(None);
        }
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, self.read_started_request()).await {
            Ok(request) => request.map(Some),
            Err(_) => Err(invalid(format!(
                "request not complete within {REQUEST_READ_TIMEOUT:?}"
            ))),
        }
    }

    async fn read_started_request(&mut self) -> io::Result<Request> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid(format!("request head over {MAX_HEAD_BYTES} bytes")));
            }
            self.read_some().await?;
        };
        let head: Vec<u8> = self.buf.drain(..head_end + 4).collect();
        let (method, target, http10, headers) = parse_head(&head[..head_end])?;

        let chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .any(|value| value.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let body = if chunked {
            self.read_chunked_body().await?
        } else {
            let length = match headers.get(CONTENT_LENGTH) {
                None => 0,
                Some(value) => value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<usize>().ok())
                    .ok_or_else(|| invalid("unparsable content-length".to_owned()))?,
            };
            self.take(length).await?
        };

        let connection = |token: &[u8]| {
            headers.get_all(CONNECTION).iter().any(|value| {
                value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
            })
        };
        let close = connection(b"close") || (http10 && !connection(b"keep-alive"));
        Ok(Request {
            method,
            target,
            headers,
            body,
            close,
        })
    }

    async fn read_chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.take_line().await?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailer fields, if any, up to the empty line that ends the message.
                while !self.take_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(invalid(format!("request body over {MAX_BODY_BYTES} bytes")));
            }
            body.extend(self.take(size).await?);
            if !self.take_line().await?.is_empty() {
                return Err(invalid("chunk not followed by CRLF".to_owned()));
            }
        }
    }

    /// The next line without its CRLF.
    async fn take_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..at + 2).collect();
                line.truncate(at);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid("line too long".to_owned()));
            }
            self.read_some().await?;
        }
    }

    /// Exactly `n` bytes.
    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        if n > MAX_BODY_BYTES {
            return Err(invalid(format!("request body over {MAX_BODY_BYTES} bytes")));
        }
        while self.buf.len() < n {
            self.read_some().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads at least one byte more; end of stream mid-request is an error.
    async fn read_some(&mut self) -> io::Result<()> {
        if self.read_more().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-request",
            ));
        }
        Ok(())
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes `reply` with its own `Content-Length`, and `Connection: close` when `close`.
    async fn write_reply(&mut self, reply: &Reply, close: bool) -> io::Result<()> {
        let mut out = Vec::with_capacity(reply.body.len() + 512);
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                reply.status.as_u16(),
                reply.status.canonical_reason().unwrap_or("Unknown")
            )
            .as_bytes(),
        );
        let mut headers = reply.headers.clone();
        strip_hop_by_hop(&mut headers);
        headers.remove(CONTENT_LENGTH);
        for (name, value) in &headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", reply.body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&reply.body);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }
}

/// Request line and headers: method, target, whether it is HTTP/1.0, headers.
fn parse_head(head: &[u8]) -> io::Result<(Method, String, bool, HeaderMap)> {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid(format!("bad method {method:?}")))?;
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        other => return Err(invalid(format!("unsupported version {other:?}"))),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err(invalid(format!(
                "bad header line {:?}",
                String::from_utf8_lossy(line)
            )));
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii())
            .map_err(|e| invalid(format!("bad header name: {e}")))?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
            .map_err(|e| invalid(format!("bad header value: {e}")))?;
        headers.append(name, value);
    }
    Ok((method, target.to_owned(), http10, headers))
}

/// The path and query of a request target, also when a client sent the absolute form.
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// ---------------------------------------------------------------------------------------------
// Tests: the helper itself, and the real SDK through it against moto.

const REGION: &str = "us-east-1";
/// The most any one SDK call in these tests may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The SDK calls these tests make, one per protocol the inventory walk uses.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// Tagging API `GetResources` (awsJson1_1).
    GetResources,
    /// STS `GetCallerIdentity` (awsQuery).
    GetCallerIdentity,
    /// EC2 `DescribeInstances` (ec2Query).
    DescribeInstances,
}

/// How an SDK call ended, reduced to what the tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The service answered with an error.
    Service {
        status: u16,
        code: Option<String>,
    },
    /// No response arrived: connection or I/O failure.
    Dispatch,
    /// Any other SDK error, rendered for the failure message.
    Other(String),
}

impl Call {
    fn operation(self) -> &'static str {
        match self {
            Call::GetResources => "GetResources",
            Call::GetCallerIdentity => "GetCallerIdentity",
            Call::DescribeInstances => "DescribeInstances",
        }
    }

    /// The error code this call's protocol uses for throttling.
    fn throttle_code(self) -> &'static str {
        match self {
            Call::GetResources => "ThrottlingException",
            Call::GetCallerIdentity => "Throttling",
            Call::DescribeInstances => "RequestLimitExceeded",
        }
    }

    fn server_error_code(self) -> &'static str {
        match self {
            Call::GetResources => "InternalFailure",
            Call::GetCallerIdentity | Call::DescribeInstances => "InternalError",
        }
    }

    async fn send(self, config: &SdkConfig) -> Outcome {
        let call = async {
            match self {
                Call::GetResources => outcome(
                    aws_sdk_resourcegroupstagging::Client::new(config)
                        .get_resources()
                        .send()
                        .await,
                ),
                Call::GetCallerIdentity => outcome(
                    aws_sdk_sts::Client::new(config)
                        .get_caller_identity()
                        .send()
                        .await,
                ),
                Call::DescribeInstances => outcome(
                    aws_sdk_ec2::Client::new(config)
                        .describe_instances()
                        .send()
                        .await,
                ),
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| panic!("{self:?} did not end within {CALL_TIMEOUT:?}"))
    }
}

fn outcome<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Outcome
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(_) => Outcome::Ok,
        Err(SdkError::ServiceError(e)) => Outcome::Service {
            status: e.raw().status().as_u16(),
            code: e.err().code().map(str::to_owned),
        },
        Err(SdkError::DispatchFailure(_)) => Outcome::Dispatch,
        Err(other) => Outcome::Other(format!("{other:?}")),
    }
}

fn seen(operation: &str, status: u16, faulted: bool) -> Seen {
    Seen {
        operation: operation.to_owned(),
        status,
        faulted,
    }
}

async fn moto_and_proxy() -> (Moto, FaultProxy) {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    (moto, proxy)
}

#[test]
fn s3_bucket_requests_are_named_by_method_and_sub_resource() {
    for (method, target, want) in [
        (Method::POST, "/b?delete", Some("DeleteObjects")),
        (
            Method::POST,
            "/b?delete&x-id=DeleteObjects",
            Some("DeleteObjects"),
        ),
        (Method::GET, "/b?tagging", Some("GetBucketTagging")),
        (Method::PUT, "/b?tagging", Some("PutBucketTagging")),
        (
            Method::GET,
            "/b?versions&max-keys=1000",
            Some("ListObjectVersions"),
        ),
        (Method::DELETE, "/b", Some("DeleteBucket")),
        (Method::DELETE, "/b/key", None),
        (Method::GET, "/2015-03-31/functions/f", Some("GetFunction")),
        (Method::GET, "/", None),
    ] {
        assert_eq!(
            rest_operation(&method, target).as_deref(),
            want,
            "{method} {target}"
        );
    }
}

#[test]
fn operation_of_reads_target_header_then_action_parameter() {
    fn check(target: Option<&str>, body: &str, expected: &str) {
        let mut headers = HeaderMap::new();
        if let Some(target) = target {
            headers.insert(
                "x-amz-target",
                HeaderValue::from_str(target).expect("test targets are valid header values"),
            );
        }
        assert_eq!(
            operation_of(&headers, body.as_bytes()),
            expected,
            "target {target:?}, body {body:?}"
        );
    }

    check(
        Some("ResourceGroupsTaggingAPI_20170126.GetResources"),
        "{}",
        "GetResources",
    );
    check(Some("GetResources"), "", "GetResources");
    // The header wins over a body that happens to look like a form.
    check(
        Some("ResourceGroupsTaggingAPI_20170126.TagResources"),
        "Action=DescribeInstances",
        "TagResources",
    );
    check(
        None,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "GetCallerIdentity",
    );
    check(
        None,
        "Version=2016-11-15&Action=TerminateInstances&InstanceId.1=i-1",
        "TerminateInstances",
    );
    check(None, "", "unknown");
    check(None, "{\"ResourcesPerPage\":100}", "unknown");
    check(None, "Action=", "unknown");
}

#[test]
fn protocol_of_tells_json_sts_and_ec2_apart() {
    let mut json = HeaderMap::new();
    json.insert(
        "x-amz-target",
        HeaderValue::from_static("ResourceGroupsTaggingAPI_20170126.GetResources"),
    );
    assert_eq!(protocol_of(&json, b"{}"), Protocol::Json);
    let none = HeaderMap::new();
    assert_eq!(
        protocol_of(&none, b"Action=GetCallerIdentity&Version=2011-06-15"),
        Protocol::Query
    );
    assert_eq!(
        protocol_of(&none, b"Action=DescribeInstances&Version=2016-11-15"),
        Protocol::Ec2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_pass_through_to_moto_and_are_logged() {
    let (moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 1).await;

    for call in [Call::GetCallerIdentity, Call::GetResources] {
        assert_eq!(
            call.send(&config).await,
            Outcome::Ok,
            "{call:?}; moto log:\n{}",
            moto.log()
        );
    }

    assert_eq!(
        proxy.requests(),
        [
            seen("GetCallerIdentity", 200, false),
            seen("GetResources", 200, false),
        ]
    );
    assert_eq!(proxy.count("GetResources"), 1);
    assert_eq!(proxy.count("DescribeInstances"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_fails_the_call_once_retries_run_out() {
    let (_moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 2).await;

    for call in [
        Call::GetResources,
        Call::GetCallerIdentity,
        Call::DescribeInstances,
    ] {
        proxy.set_fault(call.operation(), Fault::Throttle, None);

        assert_eq!(
            call.send(&config).await,
            Outcome::Service {
                status: 400,
                code: Some(call.throttle_code().to_owned())
            },
            "{call:?}"
        );
        assert_eq!(proxy.count(call.operation()), 2, "{call:?}: both attempts");
    }
    assert!(
        proxy
            .requests()
            .iter()
            .all(|request| request.faulted && request.status == 400),
        "{:?}",
        proxy.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_throttle_is_retried_and_the_call_succeeds() {
    let (moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 3).await;
    proxy.set_fault("GetResources", Fault::Throttle, Some(1));

    assert_eq!(
        Call::GetResources.send(&config).await,
        Outcome::Ok,
        "moto log:\n{}",
        moto.log()
    );

    assert_eq!(
        proxy.requests(),
        [
            seen("GetResources", 400, true),
            seen("GetResources", 200, false),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_fail_the_call_after_every_attempt() {
    let (_moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 3).await;

    for call in [Call::GetResources, Call::GetCallerIdentity] {
        proxy.set_fault(call.operation(), Fault::ServerError, None);

        assert_eq!(
            call.send(&config).await,
            Outcome::Service {
                status: 500,
                code: Some(call.server_error_code().to_owned())
            },
            "{call:?}"
        );
        assert_eq!(proxy.count(call.operation()), 3, "{call:?}: all attempts");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_fail_dispatch_and_clearing_restores_service() {
    let (moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 2).await;
    proxy.set_fault("GetResources", Fault::Drop, None);

    assert_eq!(Call::GetResources.send(&config).await, Outcome::Dispatch);
    assert_eq!(
        proxy.requests(),
        [seen("GetResources", 0, true), seen("GetResources", 0, true),]
    );

    proxy.clear_faults();
    assert_eq!(
        Call::GetResources.send(&config).await,
        Outcome::Ok,
        "moto log:\n{}",
        moto.log()
    );
    assert_eq!(proxy.count("GetResources"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_holds_the_request_then_forwards_it() {
    const DELAY: Duration = Duration::from_millis(300);
    let (moto, proxy) = moto_and_proxy().await;
    let config = proxy.sdk_config(REGION, 1).await;
    proxy.set_fault("GetCallerIdentity", Fault::Delay(DELAY), Some(1));

    let started = Instant::now();
    let delayed = Call::GetCallerIdentity.send(&config).await;
    let elapsed = started.elapsed();
    let undelayed = Call::GetCallerIdentity.send(&config).await;

    assert_eq!(delayed, Outcome::Ok, "moto log:\n{}", moto.log());
    assert_eq!(undelayed, Outcome::Ok, "moto log:\n{}", moto.log());
    assert!(
        elapsed >= DELAY,
        "took {elapsed:?}, less than the {DELAY:?} delay"
    );
    assert_eq!(
        proxy.requests(),
        [
            seen("GetCallerIdentity", 200, true),
            seen("GetCallerIdentity", 200, false),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_proxy_closes_its_listener_and_open_connections() {
    let (_moto, proxy) = moto_and_proxy().await;
    let address = proxy.endpoint().trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&address)
        .await
        .expect("connecting to the running proxy");
    // A keep-alive connection only has a task once accepted; a request proves it was.
    idle.write_all(b"GET /moto-api/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writing a request to the proxy");
    let mut head = [0u8; 12];
    tokio::time::timeout(CALL_TIMEOUT, idle.read_exact(&mut head))
        .await
        .expect("the proxy answers within the timeout")
        .expect("reading the status line");
    assert_eq!(&head, b"HTTP/1.1 200");

    drop(proxy);

    // The open connection is closed: reads drain the rest of the answer, then hit end of stream.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("the connection closes within 5s of the drop")
        .expect("reading until the proxy closes the connection");
    // And the port no longer accepts connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&address).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{address} still accepts connections 5s after the drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
