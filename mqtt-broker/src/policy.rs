//! [`BrokerPolicy`]: the engine's [`Policy`] in this broker — who may connect (the password
//! file), and what they may publish, subscribe to and receive (the ACL).

use std::collections::HashMap;
use std::sync::Arc;

use mqtt_session::broker::{AuthDecision, AuthRequest, ConnectInfo, Policy};
use mqtt_session::codec::ReasonCode;

use crate::acl::{Acl, Client};
use crate::password::{PasswordFile, Verdict};

/// Authentication by password file and authorization by ACL.
///
/// - No password file: everyone may connect, and User Names are not verified, so the ACL's
///   `user` blocks and `%u` patterns apply to nobody.
/// - A password file: a client with a User Name must give that user's password (else CONNACK
///   0x86 Bad User Name or Password, 3.1.1: 0x04); the check is deferred to the host
///   ([`AuthDecision::Defer`]), which runs [`BrokerPolicy::check_password`] off the engine's
///   thread. A client without a User Name is refused (0x87 Not authorized, 3.1.1: 0x05) unless
///   anonymous clients are allowed.
/// - With [`BrokerPolicy::with_identity_as_username`] (`--use-identity-as-username`), the
///   certificate authenticates instead: see there.
/// - Enhanced authentication (an Authentication Method) is not offered: 0x8C Bad
///   authentication method. [MQTT-4.12.0-1]
#[derive(Debug, Clone)]
pub struct BrokerPolicy {
    acl: Arc<Acl>,
    passwords: Option<Arc<PasswordFile>>,
    allow_anonymous: bool,
    /// With `--use-identity-as-username`: the certificate identity of each session's client
    /// (Client Identifier → the Common Name it connected with last).
    identities: Option<HashMap<String, Arc<str>>>,
}

impl BrokerPolicy {
    /// A policy with these rules and users. `allow_anonymous` matters only with a password
    /// file (without one everyone is let in).
    #[must_use]
    pub fn new(acl: Acl, passwords: Option<PasswordFile>, allow_anonymous: bool) -> Self {
        Self {
            acl: Arc::new(acl),
            passwords: passwords.map(Arc::new),
            allow_anonymous,
            identities: None,
        }
    }

    /// The identity a verified TLS client certificate proves (its subject Common Name,
    /// [`ConnectionInfo::tls_identity`](mqtt_session::broker::ConnectionInfo)) is the client's
    /// User Name for the ACL (`--use-identity-as-username`), and the certificate is what
    /// authenticates (a password file is not used):
    ///
    /// - a client without a verified certificate (plain TCP or WebSocket, or TLS without one)
    ///   is refused: 0x87 Not authorized (3.1.1: 0x05);
    /// - a CONNECT's User Name, if it has one, must be the certificate's name, else 0x86 Bad
    ///   User Name or Password (3.1.1: 0x04): the User Name the engine keeps with the session
    ///   is then never another user's;
    /// - the ACL's `user` blocks and `%u` patterns see the certificate's name. The engine
    ///   asks the ACL questions with the session's Client Identifier and User Name, so the
    ///   policy keeps the identity of each session's client, set when its CONNECT is accepted
    ///   (which the engine completes at once: nothing is deferred in this mode) and dropped
    ///   when the session ends ([`BrokerPolicy::session_ended`]). A session with no identity
    ///   known — restored after a restart, whose client has not connected since — is judged as
    ///   anonymous (only the rules for every client apply) until its client connects again.
    ///   One more limitation: when a client with another certificate takes over a connected
    ///   session's Client Identifier, the old client's will, if the takeover publishes it at
    ///   once, is checked against the new client's rights (the identity changes at the
    ///   CONNECT, before the engine closes the old connection).
    #[must_use]
    pub fn with_identity_as_username(mut self) -> Self {
        self.identities = Some(HashMap::new());
        self
    }

    /// The session of `client_id` has ended (and no new one has the same Client Identifier):
    /// the identity kept for it is forgotten.
    pub fn session_ended(&mut self, client_id: &str) {
        if let Some(identities) = &mut self.identities {
            identities.remove(client_id);
        }
    }

    /// Replaces the ACL and the users (a reload); connections stay, and the next decisions
    /// use the new files. Whether a password file is used at all does not change.
    pub fn reload(&mut self, acl: Acl, passwords: Option<PasswordFile>) {
        self.acl = Arc::new(acl);
        if self.passwords.is_some() {
            self.passwords = passwords.map(Arc::new);
        }
    }

    /// Whether User Names are verified (a password file is used).
    #[must_use]
    pub fn authenticates(&self) -> bool {
        self.passwords.is_some()
    }

    /// The users, for a password check off the engine's thread.
    #[must_use]
    pub fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.passwords.clone()
    }

    /// The answer to a deferred CONNECT ([`mqtt_session::broker::Output::Authenticate`]):
    /// slow on purpose (a password hash), so the host runs it on another thread.
    #[must_use]
    pub fn check_password(passwords: &PasswordFile, request: &AuthRequest) -> AuthDecision {
        let (Some(user), Some(password)) = (&request.username, &request.password) else {
            return AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        };
        match passwords.verify(user, password) {
            Verdict::Accepted => AuthDecision::Accept,
            Verdict::UnknownUser | Verdict::WrongPassword => {
                AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
        }
    }

    /// The client as the ACL sees it: its User Name only when it was verified (with
    /// `--use-identity-as-username`, the identity of its certificate).
    fn client<'a>(&'a self, client_id: &'a str, username: Option<&'a str>) -> Client<'a> {
        if let Some(identities) = &self.identities {
            return Client::new(client_id, identities.get(client_id).map(|i| &**i));
        }
        Client::new(client_id, username.filter(|_| self.authenticates()))
    }

    /// `authenticate` with `--use-identity-as-username`.
    fn authenticate_by_certificate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        let Some(identities) = &mut self.identities else {
            return AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED);
        };
        let Some(identity) = info.transport.tls_identity.as_deref() else {
            tracing::info!(
                client_id = info.client_id,
                "client without a verified certificate refused"
            );
            return AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED);
        };
        if let Some(user) = info.username
            && user != identity
        {
            tracing::info!(
                client_id = info.client_id,
                user,
                identity,
                "User Name is not the certificate's name: refused"
            );
            return AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        }
        identities.insert(info.client_id.to_owned(), Arc::from(identity));
        AuthDecision::Accept
    }
}

impl Policy for BrokerPolicy {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.authentication_method.is_some() {
            return AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        if self.identities.is_some() {
            return self.authenticate_by_certificate(info);
        }
        if self.passwords.is_none() {
            return AuthDecision::Accept;
        }
        match info.username {
            Some(_) => AuthDecision::Defer,
            None if self.allow_anonymous => AuthDecision::Accept,
            None => {
                tracing::info!(client_id = info.client_id, "anonymous client refused");
                AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED)
            }
        }
    }

    fn may_publish(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let allowed = self
            .acl
            .may_publish(self.client(client_id, username), topic);
        if !allowed {
            tracing::info!(client_id, username, topic, "publish denied by the ACL");
        }
        allowed
    }

    fn may_subscribe(&mut self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let allowed = self
            .acl
            .may_subscribe(self.client(client_id, username), filter);
        if !allowed {
            tracing::info!(client_id, username, filter, "subscribe denied by the ACL");
        }
        allowed
    }

    fn may_receive(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let allowed = self.acl.may_read(self.client(client_id, username), topic);
        if !allowed {
            tracing::debug!(client_id, username, topic, "delivery withheld by the ACL");
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mqtt_session::broker::{ConnectionId, ConnectionInfo};
    use mqtt_session::codec::ProtocolVersion;

    fn identity_policy() -> BrokerPolicy {
        let acl = Acl::parse("default deny\nuser alice\nallow both alice/#\n").unwrap();
        BrokerPolicy::new(acl, None, false).with_identity_as_username()
    }

    fn connect(
        policy: &mut BrokerPolicy,
        client_id: &str,
        username: Option<&str>,
        identity: Option<&str>,
    ) -> AuthDecision {
        let mut transport = ConnectionInfo::from_peer(([127, 0, 0, 1], 1).into());
        if let Some(identity) = identity {
            transport = transport.with_tls_identity(identity);
        }
        let mut info =
            ConnectInfo::new(ConnectionId(1), ProtocolVersion::V5, client_id, &transport);
        info.username = username;
        policy.authenticate(&info)
    }

    #[test]
    fn the_certificate_identity_is_the_acl_user() {
        let mut p = identity_policy();
        // No verified certificate: refused, whatever the User Name.
        assert_eq!(
            connect(&mut p, "c", Some("alice"), None),
            AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED)
        );
        // A User Name that is not the certificate's: refused.
        assert_eq!(
            connect(&mut p, "c", Some("alice"), Some("bob")),
            AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert!(!p.may_publish("c", Some("alice"), "alice/x"));
        // No User Name, or the certificate's: accepted, with the certificate's rights (the
        // User Name the engine passes does not count).
        assert_eq!(
            connect(&mut p, "c", None, Some("alice")),
            AuthDecision::Accept
        );
        assert!(p.may_publish("c", None, "alice/x"));
        assert!(p.may_receive("c", None, "alice/x"));
        assert!(p.may_subscribe("c", None, "alice/#"));
        assert_eq!(
            connect(&mut p, "d", Some("bob"), Some("bob")),
            AuthDecision::Accept
        );
        assert!(!p.may_publish("d", Some("alice"), "alice/x"));
        // bob taking over alice's Client Identifier gets bob's rights.
        assert_eq!(
            connect(&mut p, "c", None, Some("bob")),
            AuthDecision::Accept
        );
        assert!(!p.may_publish("c", None, "alice/x"));
        // A session that ended: its identity is forgotten.
        assert_eq!(
            connect(&mut p, "c", None, Some("alice")),
            AuthDecision::Accept
        );
        p.session_ended("c");
        assert!(!p.may_publish("c", Some("alice"), "alice/x"));
    }
}
