//! The [`Dialect`] trait, the shared [`StreamDialect`], and the
//! [`StreamReport`] a dialect writes.

use std::fmt;
use std::sync::Arc;

use crate::framing::Event;
use crate::provider::error::ProviderError;
use crate::provider::usage::Usage;

/// A streaming protocol: what each event of a streamed answer is; see the
/// [module documentation](crate::provider::dialect).
pub trait Dialect: Send + Sync + 'static {
    /// A short name, for logs, `Debug` and settings files (`"openai-chat"`).
    fn name(&self) -> &str;

    /// Reads one event (for an NDJSON stream, one line, as the event's data),
    /// and says through `report` what it is: [`content`](StreamReport::content),
    /// an [`end`](StreamReport::end), an [`error`](StreamReport::error), the
    /// [`model`](StreamReport::set_model), the [`usage`](StreamReport::set_usage).
    /// An event it says nothing about is neither (a keep-alive, metadata).
    /// Called for every event in order, so keep it cheap.
    fn read(&self, event: &Event, report: &mut StreamReport);
}

/// A [`Dialect`], shared: the value a client's settings and a call hold.
/// Cheap to clone; two are equal when their dialects have the same name.
///
/// In a settings file (feature `serde`), one of `"openai"`, `"openai-chat"`,
/// `"openai-responses"`, `"anthropic"`, `"ollama"`.
#[derive(Clone)]
pub struct StreamDialect(Arc<dyn Dialect>);

impl StreamDialect {
    /// Shares `dialect`.
    pub fn new(dialect: impl Dialect) -> Self {
        StreamDialect(Arc::new(dialect))
    }

    /// The dialect.
    pub fn get(&self) -> &dyn Dialect {
        &*self.0
    }

    /// Reads `event` into `report`, keeping what it says about this event
    /// apart from what it said of the earlier ones.
    pub(crate) fn read(&self, event: &Event, report: &mut StreamReport) -> Said {
        let before = report.content_events;
        report.error = None;
        report.end_here = false;
        self.0.read(event, report);
        Said {
            content: report.content_events != before,
            end: report.end_here,
            error: report.error.take(),
        }
    }
}

impl fmt::Debug for StreamDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl PartialEq for StreamDialect {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.name() == other.0.name()
    }
}

impl Eq for StreamDialect {}

/// What one event was, as [`StreamDialect::read`] tells it.
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub(crate) content: bool,
    pub(crate) end: bool,
    pub(crate) error: Option<ProviderError>,
}

/// What a stream's events have said so far: how many carried content,
/// whether the end came, the answering model and the usage. A [`Dialect`]
/// writes it; [`StreamResponse`](crate::client::StreamResponse) reports it.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    content_events: u64,
    ended: bool,
    /// The event being read is an end marker.
    end_here: bool,
    error: Option<ProviderError>,
    model: Option<Arc<str>>,
    usage: Option<Usage>,
    /// Where a dialect found what it looks for in the last event, to look
    /// there first in the next: the events of one stream share their layout.
    pub(super) layout: [usize; 2],
}

impl StreamReport {
    /// Marks the event being read as carrying generated content.
    pub fn content(&mut self) {
        self.content_events = self.content_events.saturating_add(1);
    }

    /// Marks the event being read as the stream's complete end (or as
    /// saying the answer is whole: a `finish_reason`).
    pub fn end(&mut self) {
        self.ended = true;
        self.end_here = true;
    }

    /// Marks the event being read as an error the provider sent inside the
    /// stream.
    pub fn error(&mut self, error: ProviderError) {
        self.error = Some(error);
    }

    /// Sets the answering model.
    pub fn set_model(&mut self, model: &str) {
        if self.model.as_deref() != Some(model) {
            self.model = Some(model.into());
        }
    }

    /// Sets the usage reported so far (a dialect whose API reports it in
    /// parts merges them with [`usage`](Self::usage) first).
    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// How many events carried content.
    pub fn content_events(&self) -> u64 {
        self.content_events
    }

    /// Whether the stream's end marker came.
    pub fn is_complete(&self) -> bool {
        self.ended
    }

    /// The model that answered, once an event said.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The usage reported, once an event said.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
