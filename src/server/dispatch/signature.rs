//! The signature check of an incoming message: its signature, and the age
//! of a signed one. Called once per delivery, before anything the message
//! claims is used; the one place dispatch knows about signing.

use super::refusal::Refused;
use crate::queue::QueueMessage;
use crate::server::ServerConfig;
use crate::wire;

/// Checks `message` (as sent, out of any SNS envelope) as `config` says.
/// `Err` is the reason to refuse it.
pub(super) fn check(config: &ServerConfig, message: &QueueMessage) -> Result<(), Refused> {
    let Some(signing) = &config.signing else {
        return Ok(());
    };
    signing.check(message).map_err(Refused::Signature)?;
    // A signed message is also checked for age: its signature proves who
    // sent it, not that it is not an old one sent again.
    if let Some(max_age) = config.signature_max_age
        && message.attribute(wire::attr::SIGNATURE).is_some()
    {
        wire::signing::check_fresh(message, std::time::SystemTime::now(), max_age)
            .map_err(Refused::Stale)?;
    }
    Ok(())
}
