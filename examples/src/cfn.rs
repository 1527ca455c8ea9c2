//! A CloudFormation custom resource that creates server groups, on AWS Lambda.
//!
//! CloudFormation sends Create, Update and Delete requests at least once, and expects
//! exactly one answer per request at the presigned `ResponseURL`. Only the creation is
//! made idempotent (key = the request id; the token is passed downstream as the cloud
//! API's client token). The response is always sent, replay or not: a duplicate that
//! sent none would leave the stack waiting for an hour. A duplicate that finds the
//! creation in progress waits for it; if the wait runs out, it returns an error
//! without answering, so Lambda retries it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use idem::{idempotent, Context, Error};
use serde::{Deserialize, Serialize};

/// The custom resource's properties: `Size` (CloudFormation sends numbers as strings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct GroupProperties {
    /// How many servers.
    pub size: String,
}

/// A request as this resource receives it.
pub type Request = CloudFormationCustomResourceRequest<GroupProperties, GroupProperties>;

/// A server group, as the cloud API describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// The group's id: the resource's physical id.
    pub id: String,
    /// How many servers.
    pub size: u32,
}

/// A simulated cloud API with client tokens (as EC2's `ClientToken`): a create that
/// repeats a token returns the group that token created.
#[derive(Debug, Default)]
pub struct Cloud {
    by_token: Mutex<HashMap<String, Group>>,
    groups: Mutex<HashMap<String, Group>>,
    created: AtomicUsize,
    /// How long a creation takes (to let duplicates overlap in tests).
    pub create_latency: Duration,
}

impl Cloud {
    /// A cloud whose creations take `create_latency`.
    pub fn with_latency(create_latency: Duration) -> Self {
        Cloud {
            create_latency,
            ..Cloud::default()
        }
    }

    /// Creates a group, once per client token.
    pub async fn create_group(&self, client_token: &str, size: u32) -> Group {
        tokio::time::sleep(self.create_latency).await;
        let mut by_token = self.by_token.lock().unwrap();
        if let Some(group) = by_token.get(client_token) {
            return group.clone();
        }
        let n = self.created.fetch_add(1, Ordering::SeqCst);
        let group = Group {
            id: format!("sg-{n:08x}"),
            size,
        };
        by_token.insert(client_token.to_owned(), group.clone());
        self.groups
            .lock()
            .unwrap()
            .insert(group.id.clone(), group.clone());
        group
    }

    /// Resizes a group.
    pub fn resize(&self, id: &str, size: u32) -> Result<(), String> {
        match self.groups.lock().unwrap().get_mut(id) {
            Some(group) => {
                group.size = size;
                Ok(())
            }
            None => Err(format!("no group {id}")),
        }
    }

    /// Deletes a group; deleting one that is gone succeeds (CloudFormation retries
    /// deletes too).
    pub fn delete(&self, id: &str) {
        self.groups.lock().unwrap().remove(id);
    }

    /// How many groups were ever created.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// The groups that exist now.
    pub fn groups(&self) -> Vec<Group> {
        self.groups.lock().unwrap().values().cloned().collect()
    }
}

/// Why a request was not answered: Lambda retries the invocation (and sends it to the
/// function's dead-letter queue once its retries run out).
///
/// CloudFormation is answered FAILED only when the resource itself failed (invalid
/// properties, a cloud API that refused). idem's own errors are not the resource's
/// failure: a throttled or unreachable store before the body ran, a creation still in
/// progress, or a lease lost to another attempt (which answers SUCCESS itself) leave the
/// request unanswered, so a retry or the other attempt answers it truthfully.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    /// The same request's creation is still in progress elsewhere after the wait.
    #[error("the creation for request {0} is still in progress; retry")]
    InProgress(String),
    /// idem could not decide the creation: the store failed (retryable or not), the
    /// lease was lost to another attempt, or the record could not be read.
    #[error("the creation for request {request_id} was not decided: {error}")]
    Undecided {
        /// The request.
        request_id: String,
        /// What idem answered.
        #[source]
        error: Error,
    },
    /// The response could not be delivered to CloudFormation.
    #[error("could not send the response to CloudFormation: {0}")]
    Response(String),
}

/// The handler: a cloud API, an HTTP client for the responses, and how long a duplicate
/// waits for a creation in progress.
pub struct Handler {
    /// The cloud API.
    pub cloud: std::sync::Arc<Cloud>,
    /// Sends the responses.
    pub http: reqwest::Client,
    /// How long a duplicate Create waits for the first one (keep it under the Lambda
    /// timeout).
    pub wait: Duration,
}

impl Handler {
    /// Creates the group once per request id; duplicates get the same group.
    #[idempotent(key = request_id, name = "cfn::create_group", ttl = "24h", wait = self.wait)]
    async fn create_group(&self, request_id: &str, size: u32) -> Result<Group, Error> {
        let token = Context::current()
            .expect("runs under idem")
            .token()
            .to_owned();
        Ok(self.cloud.create_group(&token, size).await)
    }

    /// Handles one request and answers it, unless a creation is still in progress.
    pub async fn handle(&self, request: Request) -> Result<(), Unanswered> {
        let mut response = CloudFormationCustomResourceResponse::default();
        let outcome: Result<(String, HashMap<String, String>), String> = match &request {
            CloudFormationCustomResourceRequest::Create(create) => {
                fill(
                    &mut response,
                    &create.request_id,
                    &create.stack_id,
                    &create.logical_resource_id,
                );
                match parse_size(&create.resource_properties) {
                    Err(why) => Err(why),
                    Ok(size) => match self.create_group(&create.request_id, size).await {
                        Ok(group) => Ok((
                            group.id.clone(),
                            HashMap::from([("GroupId".into(), group.id)]),
                        )),
                        Err(Error::InProgress { .. }) => {
                            return Err(Unanswered::InProgress(create.request_id.clone()))
                        }
                        Err(error) => {
                            return Err(Unanswered::Undecided {
                                request_id: create.request_id.clone(),
                                error,
                            })
                        }
                    },
                }
            }
            CloudFormationCustomResourceRequest::Update(update) => {
                fill(
                    &mut response,
                    &update.request_id,
                    &update.stack_id,
                    &update.logical_resource_id,
                );
                parse_size(&update.resource_properties)
                    .and_then(|size| self.cloud.resize(&update.physical_resource_id, size))
                    .map(|()| (update.physical_resource_id.clone(), HashMap::new()))
            }
            CloudFormationCustomResourceRequest::Delete(delete) => {
                fill(
                    &mut response,
                    &delete.request_id,
                    &delete.stack_id,
                    &delete.logical_resource_id,
                );
                self.cloud.delete(&delete.physical_resource_id);
                Ok((delete.physical_resource_id.clone(), HashMap::new()))
            }
            _ => Err("unknown request type".to_owned()),
        };
        match outcome {
            Ok((physical_id, data)) => {
                response.status = CloudFormationCustomResourceResponseStatus::Success;
                response.physical_resource_id = physical_id;
                response.data = data;
            }
            Err(reason) => {
                response.status = CloudFormationCustomResourceResponseStatus::Failed;
                response.reason = Some(reason);
                // A failed create has no resource; CloudFormation still needs an id.
                if response.physical_resource_id.is_empty() {
                    response.physical_resource_id = format!("failed-{}", response.request_id);
                }
            }
        }
        self.respond(response_url(&request), &response).await
    }

    async fn respond(
        &self,
        url: &str,
        response: &CloudFormationCustomResourceResponse,
    ) -> Result<(), Unanswered> {
        let body = serde_json::to_vec(response).map_err(|e| Unanswered::Response(e.to_string()))?;
        // The presigned URL is signed for an empty content type.
        let sent = self
            .http
            .put(url)
            .header("content-type", "")
            .body(body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Unanswered::Response(e.to_string()))?;
        drop(sent);
        Ok(())
    }
}

fn fill(
    response: &mut CloudFormationCustomResourceResponse,
    request_id: &str,
    stack_id: &str,
    logical_id: &str,
) {
    response.request_id = request_id.to_owned();
    response.stack_id = stack_id.to_owned();
    response.logical_resource_id = logical_id.to_owned();
}

fn parse_size(properties: &GroupProperties) -> Result<u32, String> {
    properties
        .size
        .parse()
        .map_err(|_| format!("Size must be a whole number, not `{}`", properties.size))
}

fn response_url(request: &Request) -> &str {
    match request {
        CloudFormationCustomResourceRequest::Create(r) => &r.response_url,
        CloudFormationCustomResourceRequest::Update(r) => &r.response_url,
        CloudFormationCustomResourceRequest::Delete(r) => &r.response_url,
        _ => "",
    }
}
