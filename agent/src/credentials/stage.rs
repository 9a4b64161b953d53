//! Credentials as a pipeline stage on the processor task, at both ends of a call's way through
//! it: [`CredentialsStage::prepare`] first (classify the authentication, strip the secrets from
//! headers and query: no later stage sees them), [`CredentialsStage::seal`] last, once the
//! inventory and the rules have used the path (token segments templated as `{token}`).

use std::borrow::Cow;

use super::{
    auth::{AuthClassifier, CredentialNames},
    fingerprint::Fingerprinter,
    redact,
};
use crate::call::ApiCall;

pub struct CredentialsStage {
    classifier: AuthClassifier,
}

impl CredentialsStage {
    pub fn new(names: CredentialNames<'_>, fingerprints: Fingerprinter) -> Self {
        Self {
            classifier: AuthClassifier::new(names, fingerprints),
        }
    }

    /// The names of a reloaded config; the credential cache stays.
    pub fn set_names(&mut self, names: CredentialNames<'_>) {
        self.classifier.set_names(names);
    }

    /// Classifies the call's authentication and removes its secrets from the headers and the
    /// query (the path keeps them for the inventory and the rules until [`Self::seal`]).
    pub fn prepare(&mut self, call: &mut ApiCall) {
        let auth = self.classifier.classify_and_redact(call);
        call.auth = Some(auth);
    }

    /// The last step before the call leaves for the sinks: path segments that may be secrets
    /// (tokens, JWTs: what the inventory templated as `{token}`) and credentials in a gRPC
    /// status message are replaced, so no sink has to remove anything.
    pub fn seal(&self, call: &mut ApiCall) {
        if let Cow::Owned(path) = redact::path(&call.path) {
            call.path = path;
        }
        // A server's gRPC error text may echo what the client sent.
        if let Some(message) = call.grpc.as_mut().and_then(|g| g.message.as_mut())
            && let Cow::Owned(clean) = redact::text(message)
        {
            *message = clean;
        }
    }
}
