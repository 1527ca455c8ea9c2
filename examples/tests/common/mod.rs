//! What the custom-resource tests share: a stand-in for CloudFormation's response URL,
//! the fixture events, and the lifecycle every store must pass.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use idem_examples::cfn::{Cloud, Handler, Request};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A stand-in for CloudFormation's presigned response URL: records every PUT body.
#[derive(Clone, Default)]
pub struct Responses(Arc<Mutex<Vec<(String, Value)>>>);

impl Responses {
    /// Listens on a free local port; returns its base URL.
    pub async fn listen(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = self.0.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let received = received.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).await.unwrap();
                            if header.trim().is_empty() {
                                break;
                            }
                            if let Some((name, value)) = header.split_once(':') {
                                if name.eq_ignore_ascii_case("content-length") {
                                    length = value.trim().parse().unwrap();
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).await.unwrap();
                        let path = request_line
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("")
                            .to_owned();
                        received
                            .lock()
                            .unwrap()
                            .push((path, serde_json::from_slice(&body).unwrap()));
                        reader
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                    }
                });
            }
        });
        url
    }

    pub fn all(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

pub fn fixture(name: &str, url: &str, request_id: &str, physical_id: &str) -> Request {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("{{RESPONSE_URL}}", &format!("{url}/response/{request_id}"))
        .replace("{{REQUEST_ID}}", request_id)
        .replace("{{PHYSICAL_ID}}", physical_id);
    serde_json::from_str(&text).unwrap()
}

pub fn handler(cloud: Arc<Cloud>, wait: Duration) -> Arc<Handler> {
    Arc::new(Handler {
        cloud,
        http: reqwest::Client::new(),
        wait,
    })
}

/// Create delivered twice, then Update, then Delete delivered twice: one group, one
/// response per delivery, every response a success naming the same group.
pub async fn lifecycle_with_duplicates(request_prefix: &str) {
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::default());
    let handler = handler(cloud.clone(), Duration::from_secs(5));
    let create = format!("{request_prefix}-create");
    for _ in 0..2 {
        handler
            .handle(fixture("create", &url, &create, ""))
            .await
            .unwrap();
    }
    assert_eq!(
        cloud.created(),
        1,
        "the duplicate Create made no second group"
    );
    let sent = responses.all();
    assert_eq!(sent.len(), 2, "the duplicate is answered too");
    let group = sent[0].1["PhysicalResourceId"].as_str().unwrap().to_owned();
    for (path, body) in &sent {
        assert_eq!(path, &format!("/response/{create}"));
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], group.as_str());
        assert_eq!(body["Data"]["GroupId"], group.as_str());
        assert_eq!(body["RequestId"], create.as_str());
        assert_eq!(body["LogicalResourceId"], "WebServers");
    }

    let update = format!("{request_prefix}-update");
    handler
        .handle(fixture("update", &url, &update, &group))
        .await
        .unwrap();
    assert_eq!(cloud.groups()[0].size, 5);
    let delete = format!("{request_prefix}-delete");
    for _ in 0..2 {
        handler
            .handle(fixture("delete", &url, &delete, &group))
            .await
            .unwrap();
    }
    assert!(cloud.groups().is_empty());
    let sent = responses.all();
    assert_eq!(sent.len(), 5);
    assert!(
        sent.iter().all(|(_, body)| body["Status"] == "SUCCESS"),
        "{sent:?}"
    );
    assert_eq!(cloud.created(), 1);
}
