//! Helpers for unit tests: capture tracing events with their fields.
// The model-check build (`--cfg loom`) compiles out the tests that read them.
#![cfg_attr(loom, allow(dead_code))]

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One captured event: level, message, fields (`name=value`) and the fields of
/// its enclosing spans.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) level: Level,
    pub(crate) message: String,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) spans: String,
}

impl Captured {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
pub(crate) struct Collector(pub(crate) Arc<Mutex<Vec<Captured>>>);

struct Fields(Vec<(String, String)>, String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.1, "{value:?}");
        } else {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.1.push_str(value);
        } else {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }
}

#[derive(Default)]
struct SpanFields(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Collector {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields(Vec::new(), String::new());
        attrs.record(&mut fields);
        let text = fields
            .0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(text));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields(Vec::new(), String::new());
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(existing) = ext.get_mut::<SpanFields>() {
                for (n, v) in fields.0 {
                    let _ = write!(existing.0, " {n}={v}");
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new(), String::new());
        event.record(&mut fields);
        let mut spans = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    let _ = write!(spans, "{}{{{}}} ", span.name(), f.0);
                }
            }
        }
        if let Ok(mut events) = self.0.lock() {
            events.push(Captured {
                level: *event.metadata().level(),
                message: fields.1,
                fields: fields.0,
                spans,
            });
        }
    }
}

impl Collector {
    /// Installs the collector as this thread's default subscriber until the guard
    /// is dropped.
    pub(crate) fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    pub(crate) fn events(&self) -> Vec<Captured> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
