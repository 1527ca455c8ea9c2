//! The DynamoDB store of idem: not written yet (see the project's issue on
//! `idem-dynamo`). Until then this crate is an empty placeholder in the workspace.
