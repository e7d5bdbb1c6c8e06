//! Error types shared by the layers.

/// A type-erased error, as returned by layers that add a failure mode of their own.
///
/// Concrete errors inside can be recovered with
/// [`downcast_ref`](std::error::Error#method.downcast_ref), for example
/// `err.is::<stache_resilience::CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

use std::borrow::Cow;
use std::fmt;

/// A setting that breaks a rule; names the field and the rule.
///
/// ```
/// use stache_resilience::ConfigError;
/// let err = ConfigError::new("max_connections", "must be at least 1");
/// assert_eq!(err.to_string(), "invalid max_connections: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field` breaking `rule`.
    pub fn new(field: &'static str, rule: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            rule: rule.into(),
        }
    }

    /// The name of the offending field.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it breaks.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.rule)
    }
}

impl std::error::Error for ConfigError {}
