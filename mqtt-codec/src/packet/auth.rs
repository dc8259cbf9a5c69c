//! AUTH (section 3.15, MQTT 5.0 only): enhanced authentication exchange.

use bytes::Bytes;

use super::Body;
use super::ack::{decode_reason_props, reason_props_len, write_reason_props};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};

/// AUTH (section 3.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Auth {
    /// The Authenticate Reason Code: Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties: Authentication Method and Data, Reason String, User Properties.
    pub properties: Properties,
}

impl Auth {
    /// Section 3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method" — except
    /// in the empty short form (Success, no properties).
    fn check_method(&self) -> Result<(), Violation> {
        let short_form = self.reason_code == ReasonCode::SUCCESS && self.properties.is_empty();
        if short_form || self.properties.authentication_method().is_some() {
            Ok(())
        } else {
            Err(Violation::AuthenticationMethodMissing)
        }
    }
}

impl Body for Auth {
    const TYPE: PacketType = PacketType::Auth;

    fn decode(src: &Bytes, _flags: u8, _version: ProtocolVersion) -> Result<Self, Violation> {
        let (reason_code, properties) = decode_reason_props(src, PacketType::Auth, false)?;
        let auth = Self {
            reason_code,
            properties,
        };
        auth.check_method()?;
        Ok(auth)
    }

    fn validate(&self, _version: ProtocolVersion) -> Result<(), Violation> {
        if !self.reason_code.is_valid_for(PacketType::Auth) {
            return Err(Violation::InvalidReasonCode);
        }
        self.properties
            .validate(PropertyContext::Packet(PacketType::Auth))?;
        self.check_method()
    }

    fn body_len(&self, _version: ProtocolVersion) -> usize {
        reason_props_len(self.reason_code, &self.properties, false)
    }

    fn write(&self, _version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        write_reason_props(self.reason_code, &self.properties, false, buf);
    }
}
