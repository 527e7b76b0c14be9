//! The service's web page in a real browser: headless Chromium driven
//! through WebDriver (Debian's chromium-driver), clicking through submit →
//! watch → a running task's log → cancel, with screenshots of each step
//! under target/screenshots/.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::service::{request, Service};
use serde_json::{json, Value};

/// A chromedriver and one browser session in it.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

/// A program on `PATH`, or a panic saying how to get it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} is missing: `make chromium` installs it"))
}

impl Browser {
    fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile =
            std::env::temp_dir().join(format!("runqueue-chromium-{}", std::process::id()));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1000",
        ];
        let mut args: Vec<String> = args.map(String::from).into();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": program("chromium"), "args": args}}}});
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let made = browser.call("POST", "/session", Some(caps));
        browser.session = made["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{made}"))
            .to_string();
        browser
    }

    /// A WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let headers = [("Content-Type", "application/json")];
        let r = request(&self.addr, method, path, &headers, body.as_deref());
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        v["value"].clone()
    }

    fn session(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{rest}", self.session), body)
    }

    fn script(&self, code: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({"script": code, "args": args})),
        )
    }

    fn click(&self, css: &str) {
        let found = self.session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        self.session("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Waits until `code` (a script's body) returns true.
    fn wait_for(&self, what: &str, code: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.script(code, json!([])) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        let code =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        self.script(code, json!([css]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Writes the page as a PNG under target/screenshots/.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = decode_base64(self.session("GET", "/screenshot", None).as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = request(&self.addr, "DELETE", &path, &[], None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_page_submits_watches_follows_a_log_and_cancels_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(data.path(), &["--max-parallel", "2"]);
    // Two quick tasks, then four long ones: mid-build shows both kinds.
    let tasks: Vec<Value> = (0..6)
        .map(|i| {
            let secs = if i < 2 { "0.2" } else { "30" };
            json!({"id": format!("t{i}"), "run": format!("echo start t{i}; sleep {secs}; echo end")})
        })
        .collect();
    let graph = json!({"version": 1, "tasks": tasks}).to_string();
    let browser = Browser::start();
    let page = format!("http://{}/#token={}", svc.addr, svc.token);
    browser.session("POST", "/url", Some(json!({"url": page})));
    browser.wait_for(
        "the submit form",
        "return !!document.querySelector('#graph')",
    );
    browser.script(
        "document.querySelector('#graph').value = arguments[0];",
        json!([graph]),
    );
    browser.script(
        "document.querySelector('#options').value = '{\"no_cache\": true}';",
        json!([]),
    );
    browser.click("#submit");
    browser.wait_for(
        "the live view",
        "return location.hash.startsWith('#/builds/')",
    );
    browser.wait_for(
        "the quick tasks done and two long ones running",
        "return document.querySelector('#counts').textContent.startsWith('2 of 6 tasks done') \
         && document.querySelectorAll('.running-task').length === 2",
    );
    browser.wait_for(
        "the timeline's bars",
        "return document.querySelectorAll('#timeline rect.task').length === 4",
    );
    assert_eq!(browser.text("#state"), "running");
    std::thread::sleep(Duration::from_millis(600));
    browser.screenshot("service-live-view");
    browser.click(".running-task a");
    browser.wait_for(
        "the log",
        "return document.querySelector('#log')?.textContent.includes('start t')",
    );
    assert!(
        browser.text("#log-state").contains("following"),
        "{}",
        browser.text("#log-state")
    );
    browser.screenshot("service-task-log");
    browser.session("POST", "/back", Some(json!({})));
    browser.wait_for(
        "the live view again",
        "return document.querySelectorAll('.running-task').length === 2",
    );
    browser.click("#cancel");
    browser.wait_for(
        "the kill button",
        "return document.querySelector('#cancel').textContent === 'Kill running tasks'",
    );
    browser.click("#cancel");
    browser.wait_for(
        "the cancelled state",
        "return document.querySelector('#state').textContent === 'cancelled'",
    );
    browser.screenshot("service-cancelled");
    let builds = svc.get("/api/builds");
    assert_eq!(builds["builds"][0]["state"], "cancelled", "{builds}");
    assert_eq!(builds["builds"][0]["totals"]["succeeded"], 2);
}
