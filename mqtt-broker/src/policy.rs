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
/// - Enhanced authentication (an Authentication Method) is not offered: 0x8C Bad
///   authentication method. [MQTT-4.12.0-1]
#[derive(Debug, Clone)]
pub struct BrokerPolicy {
    acl: Arc<Acl>,
    passwords: Option<Arc<PasswordFile>>,
    allow_anonymous: bool,
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

    /// The client as the ACL sees it: its User Name only when it was verified.
    fn client<'a>(&self, client_id: &'a str, username: Option<&'a str>) -> Client<'a> {
        Client::new(client_id, username.filter(|_| self.authenticates()))
    }
}

impl Policy for BrokerPolicy {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.authentication_method.is_some() {
            return AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD);
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
