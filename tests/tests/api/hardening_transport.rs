//! The transport holds against slow and silent clients (header and body timeouts, the
//! connection cap), HTML answers carry the security headers, and every client error on the
//! API answers the JSON error shape, strict about JSON content types. Slow clients are raw
//! TCP streams on loopback; the servers run with short timeouts so each test takes about a
//! second.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ALLOW, CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};
use suiji_tests::{Client, PASSWORD, TestServer, console_session, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than anything here should take: a bound on the wait, never a pass condition.
const BOUND: Duration = Duration::from_secs(15);

/// A server whose request heads must arrive within `header` and whose bodies may pause
/// `body` at most, serving at most `connections` at once.
async fn server_with(header: Duration, body: Duration, connections: usize) -> TestServer {
    TestServer::start_with(|config| {
        config.transport.header_read_timeout = header;
        config.transport.body_idle_timeout = body;
        config.transport.max_connections = connections;
    })
    .await
}

/// Waits (within [`BOUND`]) for the server to close `stream`, reading and dropping
/// whatever it sends first; panics if it never does.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

/// One HTTP/1.1 answer read off `stream`: status, head and body (by Content-Length).
async fn read_answer(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let read = async {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&data)
            );
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed in the body");
            data.extend_from_slice(&buf[..n]);
        }
        let status = head[9..12].parse().expect("status");
        (status, head, data[head_end..head_end + length].to_vec())
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("an answer in time")
}

async fn health_on(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: suiji\r\n\r\n")
        .await
        .expect("write");
    read_answer(stream).await.0
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = server_with(Duration::from_millis(500), Duration::from_secs(30), 1024).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut silent).await;
    // A keep-alive connection idle after its answer is closed the same way.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(health_on(&mut idle).await, 200);
    closed_by_server(&mut idle).await;
}

#[tokio::test]
async fn a_client_dripping_its_head_is_cut_at_the_header_timeout() {
    let server = server_with(Duration::from_millis(500), Duration::from_secs(30), 1024).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: suiji\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte every 100 ms: each arrives well within any per-read timeout, but the head
    // would take 10 s; the server has to give up on it long before the last byte.
    let mut buf = [0u8; 256];
    let mut sent = 0;
    let cut = loop {
        if sent == 100 {
            break false;
        }
        if slow.write_all(b"a").await.is_err() {
            break true;
        }
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => panic!(
                "an answer to an unfinished head: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
    };
    assert!(cut, "the server took a head dripped over 10 s");
    assert!(sent < 100);
}

#[tokio::test]
async fn idle_connections_at_the_cap_do_not_wedge_the_server() {
    let server = server_with(Duration::from_millis(500), Duration::from_secs(30), 8).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The ninth waits to be accepted until the silent ones are timed out, then is answered.
    let health = tokio::time::timeout(BOUND, Client::anonymous(&server.base).get("/health"))
        .await
        .expect("/health answered once the silent connections timed out");
    assert_eq!(health.0, StatusCode::OK, "{}", health.1);
    for stream in &mut silent {
        closed_by_server(stream).await;
    }
    // And the server serves on as before.
    let (status, _) = Client::anonymous(&server.base).get("/health").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn connections_over_the_cap_wait_while_served_ones_keep_answering() {
    let server = server_with(Duration::from_secs(10), Duration::from_secs(30), 2).await;
    let mut served = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(health_on(&mut served).await, 200);
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: suiji\r\n\r\n")
        .await
        .unwrap();
    // Two connections are held, so the third is not taken in; a wrong answer here could
    // only come from a missing cap, never from a slow machine.
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond the cap of two"
    );
    // The connection already served answers on at the cap.
    assert_eq!(health_on(&mut served).await, 200);
    drop(served);
    assert_eq!(read_answer(&mut waiting).await.0, 200);
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let server = TestServer::start_with(|config| {
        // Long enough that nothing here is timed out: only the share can free a place.
        config.transport.header_read_timeout = Duration::from_secs(60);
        config.transport.max_connections = 8;
        config.transport.max_connections_per_address = Some(4);
    })
    .await;
    let flood = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut silent = Vec::new();
    for _ in 0..8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((flood, 0).into()).unwrap();
        silent.push(socket.connect(server.addr).await.unwrap());
    }
    // Without the share all eight places are held for a minute and this waits in the queue.
    let mut user = tokio::time::timeout(BOUND, TcpStream::connect(server.addr))
        .await
        .expect("connected")
        .unwrap();
    assert_eq!(health_on(&mut user).await, 200);
    // The flood's connections were accepted before the user's: four are served, the rest
    // were closed at once.
    let mut closed = 0;
    for stream in &mut silent {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(n)) => panic!("an answer to nothing: {:?}", &buf[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(closed, 4, "the connections beyond the address's share");
    // Once the flood ends its connections, its address is served again (as soon as the
    // server has seen them end).
    drop(silent);
    let served_again = tokio::time::timeout(BOUND, async {
        loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((flood, 0).into()).unwrap();
            let mut again = socket.connect(server.addr).await.unwrap();
            again
                .write_all(b"GET /health HTTP/1.1\r\nHost: suiji\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 12];
            if again.read_exact(&mut buf).await.is_ok() {
                return buf;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the flood's address is served again");
    assert_eq!(&served_again, b"HTTP/1.1 200");
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_with_a_json_408() {
    let server = server_with(Duration::from_secs(10), Duration::from_millis(300), 1024).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: suiji\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut stream).await;
    assert_eq!(status, 408);
    let body: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "timeout", "{body}");
}

#[tokio::test]
async fn a_body_sent_slowly_but_steadily_is_taken() {
    // Pieces every 50 ms for 1.5 s in all: longer than both the header timeout and the
    // pause allowed between pieces, which only a stalled body exceeds.
    let server = server_with(Duration::from_secs(1), Duration::from_secs(1), 1024).await;
    let body = json!({"username": "inspector", "password": PASSWORD}).to_string();
    let body = format!("{body:<90}");
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: suiji\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(piece).await.unwrap();
    }
    let (status, _, answer) = read_answer(&mut stream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// `Content-Security-Policy` directives of a page.
fn csp_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn assert_hardened_html(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{what}"
    );
    let csp = csp_of(response);
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        !csp.contains("script-src"),
        "{what}: scripts follow default-src: {csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "same-origin", "{what}");
}

/// What the policy forbids: script that is not a same-origin file.
fn assert_no_inline_script(html: &str, what: &str) {
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains("src=\"/"), "{what}: inline script {tag}");
    }
    assert!(!html.contains("javascript:"), "{what}: a javascript: link");
    assert!(
        !html.contains(" onclick="),
        "{what}: an event handler attribute"
    );
}

#[tokio::test]
async fn html_pages_carry_the_security_headers_and_json_answers_nosniff() {
    let server = TestServer::start().await;
    let session = console_session(&server, "planner").await;
    for (path, cookie) in [
        ("/login", None),
        ("/public/results", None),
        ("/no-such-page", None),
        ("/targets", Some(&session)),
        ("/plans", Some(&session)),
    ] {
        let mut request = http().get(format!("{}{path}", server.base));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        assert_hardened_html(&response, path);
        let html = response.text().await.unwrap();
        assert_no_inline_script(&html, path);
    }
    let script = http()
        .get(format!("{}/static/console.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    let health = http()
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert!(health.headers().get("content-security-policy").is_none());
}

#[tokio::test]
async fn a_405_a_414_and_a_431_on_the_api_answer_the_json_error() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;

    let response = planner
        .raw(reqwest::Method::DELETE, "/api/v1/auth/login")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers()[ALLOW].to_str().unwrap().contains("POST"));
    let body: Value = response.json().await.expect("a JSON 405");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE"),
        "{body}"
    );

    let long = "x".repeat(10 * 1024);
    let (status, body) = planner.get(&format!("/api/v1/targets?q={long}")).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");

    let (status, body) = planner
        .send(
            planner
                .raw(reqwest::Method::GET, "/api/v1/me")
                .header("x-padding", "y".repeat(40 * 1024)),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");

    // The console keeps its own pages for the same mistakes.
    let page = http()
        .get(format!("{}/targets?q={long}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::URI_TOO_LONG);
    assert!(
        !page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("json")
    );
}

#[tokio::test]
async fn a_body_that_is_not_exactly_json_gets_415() {
    let server = TestServer::start().await;
    let anonymous = Client::anonymous(&server.base);
    let login = json!({"username": "planner", "password": PASSWORD}).to_string();
    for content_type in [
        "application/jsonp",
        "text/json",
        "application/json; charset=latin1",
    ] {
        let (status, body) = anonymous
            .post_bytes(
                "/api/v1/auth/login",
                content_type,
                login.clone().into_bytes(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
        assert_eq!(
            body["error"]["code"], "unsupported_media_type",
            "{content_type}: {body}"
        );
    }
    let (status, body) = anonymous
        .post_bytes(
            "/api/v1/auth/login",
            "application/json; charset=utf-8",
            login.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
