//! `runqueue serve` for the tests: started on a free loopback port with a
//! data directory of its own, and a plain HTTP/1.1 client over std's
//! sockets (so what is tested is the wire, not a client library).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running service.
pub struct Service {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    pub token: String,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Service {
    /// Starts `runqueue serve --data DATA` with `args`, waiting for its
    /// `listening on` line.
    pub fn start(data: &Path, args: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runqueue"))
            .env("RUNQUEUE_COMPONENT", super::component_path())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runqueue serve");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        let token = std::fs::read_to_string(data.join("token")).unwrap_or_default();
        Service {
            child,
            addr,
            data: data.to_path_buf(),
            token: token.trim().to_string(),
        }
    }

    /// A request with the token.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let auth = format!("Bearer {}", self.token);
        request(&self.addr, method, path, &[("Authorization", &auth)], body)
    }

    pub fn get(&self, path: &str) -> Value {
        let r = self.call("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    /// Submits `graph` with `options`; the new build's id.
    pub fn submit(&self, graph: &Value, options: Value) -> u64 {
        let body = serde_json::json!({"graph": graph, "options": options}).to_string();
        let r = self.call("POST", "/api/builds", Some(&body));
        assert_eq!(r.status, 201, "submit: {}", r.body);
        r.json()["id"].as_u64().unwrap()
    }

    /// Waits (up to `secs`) until build `id` is in one of the final states;
    /// its record.
    pub fn wait_final(&self, id: u64, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.get(&format!("/api/builds/{id}"));
            let state = b["state"].as_str().unwrap_or_default().to_string();
            if ["succeeded", "failed", "cancelled", "interrupted"].contains(&state.as_str()) {
                return b;
            }
            assert!(Instant::now() < deadline, "build {id} still {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9, reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request (`Connection: close`), the whole response read.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    parse_response(&String::from_utf8_lossy(&read_response(stream)))
}

/// A response's bytes: up to its `Content-Length` when it gives one (a
/// server may keep the connection open), else to the end.
fn read_response(stream: TcpStream) -> Vec<u8> {
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return raw;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        raw.extend(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    match length {
        Some(n) => {
            let mut body = vec![0; n];
            let _ = reader.read_exact(&mut body);
            raw.extend(body);
        }
        None => {
            let _ = reader.read_to_end(&mut raw);
        }
    }
    raw
}

fn parse_response(raw: &str) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// A chunked body's data.
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An open event stream: events as (id, JSON) as they arrive.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// Opens build `id`'s stream, from after `last` when given.
    pub fn open(service: &Service, id: u64, last: Option<u64>) -> Events {
        let mut stream = TcpStream::connect(&service.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
        let req = format!(
            "GET /api/builds/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{resume}\r\n",
            service.token
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        Events { reader }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next(&mut self) -> Option<(u64, Value)> {
        let (mut id, mut data) = (None, String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            // Chunk-size lines of the chunked encoding carry no ':'-prefix.
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            } else if line.is_empty() && !data.is_empty() {
                return Some((id?, serde_json::from_str(&data).unwrap()));
            } else if line == "0" && data.is_empty() {
                return None;
            }
        }
    }
}
