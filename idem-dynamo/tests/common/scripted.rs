//! A store whose SDK client talks to no server: each request is answered with the next
//! of a script of canned answers, and its body is kept, for the tests of request shapes
//! and of how answers and errors are read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::infallible_client_fn;
use idem_dynamo::DynamoStore;
use serde_json::Value;

/// A store over table `idem` whose client answers each request with the next of
/// `answers` (status, JSON body) and keeps the request bodies.
pub fn scripted(answers: Vec<(u16, Value)>) -> (DynamoStore, Arc<Mutex<Vec<Value>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let http = {
        let sent = sent.clone();
        infallible_client_fn(move |request| {
            let body = request.body().bytes().expect("a JSON body");
            sent.lock()
                .unwrap()
                .push(serde_json::from_slice(body).expect("JSON"));
            let (status, answer) = answers.lock().unwrap().pop_front().expect("an answer");
            http::Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .body(answer.to_string())
                .unwrap()
        })
    };
    let config = idem_dynamo::local_config("http://127.0.0.1:1")
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    let store = DynamoStore::builder(Client::from_conf(config), "idem").build_unchecked();
    (store, sent)
}
