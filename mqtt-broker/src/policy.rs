//! [`BrokerPolicy`]: the engine's [`Policy`] in this broker — who may connect (the password
//! file), and what they may publish, subscribe to and receive (the ACL).

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
    /// `--use-identity-as-username`: the certificate names the user.
    identity_as_username: bool,
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
            identity_as_username: false,
        }
    }

    /// The identity a verified TLS client certificate proves (its subject Common Name,
    /// [`ConnectionInfo::tls_identity`](mqtt_session::broker::ConnectionInfo)) is the client's
    /// User Name (`--use-identity-as-username`), and the certificate is what authenticates (a
    /// password file is not used):
    ///
    /// - a client without a verified certificate (plain TCP or WebSocket, or TLS without one)
    ///   is refused: 0x87 Not authorized (3.1.1: 0x05);
    /// - a CONNECT's User Name, if it has one, must be the certificate's name, else 0x86 Bad
    ///   User Name or Password (3.1.1: 0x04);
    /// - the client is accepted as the certificate's name ([`AuthDecision::AcceptAs`]): the
    ///   engine keeps that name with the session (also across restarts), asks the ACL with
    ///   it, and, with `BrokerConfig::sessions_owned_by_user` (which the server sets), gives a
    ///   session only to its own user.
    #[must_use]
    pub fn with_identity_as_username(mut self) -> Self {
        self.identity_as_username = true;
        self
    }

    /// Replaces the ACL and the users (a reload); connections stay, and the next decisions
    /// use the new files. Whether a password file is used at all does not change.
    pub fn reload(&mut self, acl: Acl, passwords: Option<PasswordFile>) {
        self.acl = Arc::new(acl);
        if self.passwords.is_some() {
            self.passwords = passwords.map(Arc::new);
        }
    }

    /// Whether User Names are verified (by a password file or a certificate).
    #[must_use]
    pub fn authenticates(&self) -> bool {
        self.passwords.is_some() || self.identity_as_username
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
    /// `--use-identity-as-username`, the engine's User Name is the certificate's name).
    fn client<'a>(&'a self, client_id: &'a str, username: Option<&'a str>) -> Client<'a> {
        Client::new(client_id, username.filter(|_| self.authenticates()))
    }

    /// `authenticate` with `--use-identity-as-username`.
    fn authenticate_by_certificate(info: &ConnectInfo<'_>) -> AuthDecision {
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
        AuthDecision::AcceptAs(identity.to_owned())
    }
}

impl Policy for BrokerPolicy {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.authentication_method.is_some() {
            return AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        if self.identity_as_username {
            return Self::authenticate_by_certificate(info);
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
        // No User Name, or the certificate's: accepted as the certificate's name, which the
        // engine then asks the ACL with.
        assert_eq!(
            connect(&mut p, "c", None, Some("alice")),
            AuthDecision::AcceptAs("alice".to_owned())
        );
        assert_eq!(
            connect(&mut p, "d", Some("bob"), Some("bob")),
            AuthDecision::AcceptAs("bob".to_owned())
        );
        assert!(p.may_publish("c", Some("alice"), "alice/x"));
        assert!(p.may_receive("c", Some("alice"), "alice/x"));
        assert!(!p.may_publish("d", Some("bob"), "alice/x"));
    }
}
