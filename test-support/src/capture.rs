//! Log capture that sees its own test's events and no other's.
//!
//! `tracing` caches, per callsite and for the whole process, whether any
//! subscriber is interested in it. With thread-local subscribers
//! (`tracing::subscriber::set_default`) that cache is computed from whichever
//! thread happens to reach a callsite first: a test thread with no subscriber
//! can mark a callsite "never interested" while another test is capturing, and
//! the capture then misses that line, now and then, depending on the schedule.
//!
//! This module installs **one global subscriber**, once per test binary, that is
//! interested in every callsite. It routes each event to the captures it belongs
//! to:
//!
//! * every capture [installed](Capture::install) on the thread that emits it
//!   (a `#[tokio::test]` runtime, and every task spawned on it, runs on the
//!   test's own thread);
//! * every capture whose [span](Capture::span) encloses it, or enclosed the
//!   creation of a span that encloses it: instrument tasks that run on other
//!   threads (a multi-thread runtime's workers) with `capture.span()`.
//!
//! A test sees nothing of another test's events, whatever the thread count.
//!
//! With `RUST_LOG` set, the global subscriber also prints what it passes through
//! that filter to the test's output, as a `fmt` subscriber would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, Weak};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span a [`Capture`] hands out.
const CAPTURE_SPAN: &str = "test_capture";

/// One captured event: its level, target, message, own fields (`name`, value as
/// text) and the fields of the spans around it, outermost first.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The event's level.
    pub level: Level,
    /// The event's target (its module path unless given).
    pub target: String,
    /// The `message` field.
    pub message: String,
    /// The other fields, in order.
    pub fields: Vec<(String, String)>,
    /// The enclosing spans as `name{field=value ...} `, outermost first.
    pub spans: String,
}

impl Captured {
    /// The value of the field `name`, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// One line, in the shape of `tracing_subscriber::fmt`'s output:
    /// `LEVEL spans: target: message field=value ...`.
    pub fn line(&self) -> String {
        let mut line = format!("{:>5} ", self.level);
        for span in self.spans.split_terminator("} ") {
            let _ = write!(line, "{span}}}: ");
        }
        let _ = write!(line, "{}: {}", self.target, self.message);
        for (name, value) in &self.fields {
            let _ = write!(line, " {name}={value}");
        }
        line
    }
}

/// The circuit breaker's transitions among `events`, as `(generation, from, to)`
/// in the order they were captured.
pub fn transitions(events: &[Captured]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|e| {
            Some((
                e.field("generation")?.parse().ok()?,
                e.field("from")?.to_owned(),
                e.field("to")?.to_owned(),
            ))
        })
        .collect()
}

/// Where one capture's events go.
#[derive(Debug, Default)]
struct Sink {
    events: Mutex<Vec<Captured>>,
}

impl Sink {
    fn push(&self, event: Captured) {
        // A test that panicked while holding the lock has failed already.
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// The events of one test; see the [module documentation](self).
///
/// Cheap to clone: clones share the events. Capturing stops when the last guard
/// from [`install`](Self::install) is dropped and no span from
/// [`span`](Self::span) is alive.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    sink: Arc<Sink>,
}

/// Captures the current thread's events until dropped; from [`Capture::install`].
#[must_use = "capturing stops when the guard is dropped"]
#[derive(Debug)]
pub struct CaptureGuard {
    sink: Weak<Sink>,
}

impl Capture {
    /// A capture with no events yet. Nothing is captured until it is
    /// [installed](Self::install) on a thread or its [span](Self::span) entered.
    pub fn new() -> Self {
        Capture::default()
    }

    /// Captures every event emitted on this thread until the guard is dropped
    /// (spans created meanwhile keep routing their events here, on any thread).
    pub fn install(&self) -> CaptureGuard {
        init();
        ACTIVE.with(|active| active.borrow_mut().push(Arc::downgrade(&self.sink)));
        CaptureGuard {
            sink: Arc::downgrade(&self.sink),
        }
    }

    /// A span whose events, and those of every span created inside it, come to
    /// this capture on any thread: `tokio::spawn(task.instrument(capture.span()))`.
    pub fn span(&self) -> tracing::Span {
        init();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut spans) = registry().lock() {
            spans.retain(|_, sink| sink.strong_count() > 0);
            spans.insert(key, Arc::downgrade(&self.sink));
        }
        tracing::info_span!(CAPTURE_SPAN, capture = key)
    }

    /// The events captured so far.
    pub fn events(&self) -> Vec<Captured> {
        self.sink
            .events
            .lock()
            .map(|events| events.clone())
            .unwrap_or_default()
    }

    /// The events captured so far at `DEBUG` and above, one [line](Captured::line)
    /// each.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for event in self.events() {
            if event.level <= Level::DEBUG {
                text.push_str(&event.line());
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        // Dropped on the thread it was installed on, as guards are; elsewhere it
        // finds nothing, and the weak entry dies with the capture.
        let _ = ACTIVE.try_with(|active| {
            let mut active = active.borrow_mut();
            if let Some(at) = active.iter().rposition(|s| s.ptr_eq(&self.sink)) {
                active.remove(at);
            }
        });
    }
}

thread_local! {
    /// The captures installed on this thread, innermost last.
    static ACTIVE: RefCell<Vec<Weak<Sink>>> = const { RefCell::new(Vec::new()) };
}

/// Capture spans by key, for the layer to find the sink of a new capture span.
fn registry() -> &'static Mutex<HashMap<u64, Weak<Sink>>> {
    static SPANS: OnceLock<Mutex<HashMap<u64, Weak<Sink>>>> = OnceLock::new();
    SPANS.get_or_init(Mutex::default)
}

/// Installs the global subscriber once (it prints to the test's output what
/// passes `RUST_LOG`, when that is set), then rebuilds every callsite's cached
/// interest: a callsite first reached before the subscriber existed was cached
/// as "never", and is interesting from now on. Captures call it themselves.
pub fn init() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let print = std::env::var("RUST_LOG").ok().map(|filter| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new(filter))
        });
        let subscriber = tracing_subscriber::registry()
            .with(CaptureLayer)
            .with(print);
        // A capture that silently saw nothing would let a test that expects no
        // such line pass: fail loudly instead.
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            panic!(
                "another global tracing subscriber is set in this test binary; \
                 test_support::capture needs to be the only one"
            );
        }
    });
    tracing_core::callsite::rebuild_interest_cache();
}

/// The sinks a span routes to.
struct Routes(Vec<Weak<Sink>>);

/// The text of a span's fields, for [`Captured::spans`].
struct SpanText(String);

/// The layer behind the global subscriber.
struct CaptureLayer;

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing_core::subscriber::Interest {
        tracing_core::subscriber::Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut routes = active_sinks();
        if let Some(parent) = span.parent() {
            if let Some(Routes(theirs)) = parent.extensions().get::<Routes>() {
                add_all(&mut routes, theirs);
            }
        }
        if attrs.metadata().name() == CAPTURE_SPAN {
            let key = fields.field("capture").and_then(|k| k.parse::<u64>().ok());
            let sink = key.and_then(|key| registry().lock().ok()?.get(&key).cloned());
            if let Some(sink) = sink {
                add_all(&mut routes, &[sink]);
            }
        }
        let mut extensions = span.extensions_mut();
        extensions.insert(SpanText(fields.joined()));
        if !routes.is_empty() {
            extensions.insert(Routes(routes));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            if let Some(SpanText(text)) = span.extensions_mut().get_mut::<SpanText>() {
                for (name, value) in fields.fields {
                    let _ = write!(text, " {name}={value}");
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut sinks = active_sinks();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(Routes(theirs)) = span.extensions().get::<Routes>() {
                    add_all(&mut sinks, theirs);
                }
            }
        }
        let sinks: Vec<Arc<Sink>> = sinks.iter().filter_map(Weak::upgrade).collect();
        if sinks.is_empty() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut spans = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if span.name() == CAPTURE_SPAN {
                    continue;
                }
                if let Some(SpanText(text)) = span.extensions().get::<SpanText>() {
                    let _ = write!(spans, "{}{{{}}} ", span.name(), text);
                }
            }
        }
        let captured = Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.fields,
            spans,
        };
        for sink in sinks {
            sink.push(captured.clone());
        }
    }
}

/// The live captures installed on this thread.
fn active_sinks() -> Vec<Weak<Sink>> {
    ACTIVE
        .try_with(|active| {
            let mut active = active.borrow_mut();
            active.retain(|sink| sink.strong_count() > 0);
            active.clone()
        })
        .unwrap_or_default()
}

fn add_all(into: &mut Vec<Weak<Sink>>, from: &[Weak<Sink>]) {
    for sink in from {
        if sink.strong_count() > 0 && !into.iter().any(|s| s.ptr_eq(sink)) {
            into.push(sink.clone());
        }
    }
}

/// The message and fields of an event or span, as text.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Fields {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn joined(&self) -> String {
        let mut text = String::new();
        for (name, value) in &self.fields {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{name}={value}");
        }
        text
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use tracing::Instrument;

    #[test]
    fn a_capture_sees_its_own_thread_and_not_another() {
        let ours = Capture::new();
        let theirs = Capture::new();
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let (theirs, barrier) = (theirs.clone(), barrier.clone());
            std::thread::spawn(move || {
                let _on = theirs.install();
                barrier.wait();
                tracing::info!(who = "theirs", "hello");
                barrier.wait();
            })
        };
        let _on = ours.install();
        barrier.wait();
        tracing::info!(who = "ours", "hello");
        barrier.wait();
        other.join().unwrap();
        let who = |c: &Capture| -> Vec<String> {
            c.events()
                .iter()
                .filter_map(|e| e.field("who").map(str::to_owned))
                .collect()
        };
        assert_eq!(who(&ours), ["ours"]);
        assert_eq!(who(&theirs), ["theirs"]);
    }

    #[test]
    fn nothing_is_captured_after_the_guard_drops() {
        let capture = Capture::new();
        {
            let _on = capture.install();
            tracing::warn!("inside");
        }
        tracing::warn!("outside");
        let messages: Vec<String> = capture.events().into_iter().map(|e| e.message).collect();
        assert_eq!(messages, ["inside"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_span_carries_a_capture_to_tasks_on_other_threads() {
        let capture = Capture::new();
        let task = tokio::spawn(
            async {
                let inner = tracing::info_span!("call", id = 7);
                async { tracing::info!("in a task") }
                    .instrument(inner)
                    .await;
            }
            .instrument(capture.span()),
        );
        task.await.unwrap();
        // An event on a worker thread outside the span is not ours.
        tokio::spawn(async { tracing::info!("elsewhere") })
            .await
            .unwrap();
        let events = capture.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].message, "in a task");
        assert_eq!(events[0].spans, "call{id=7} ");
        assert!(
            capture.text().contains("call{id=7}: "),
            "{}",
            capture.text()
        );
    }

    /// The failure of thread-local subscribers, made deterministic: a thread
    /// with no capture reaches a callsite first while another thread captures.
    /// With `set_default`, the callsite was then cached as "never interested"
    /// and the capturing thread missed it.
    #[test]
    fn a_callsite_first_reached_by_a_thread_without_a_capture_is_still_captured() {
        fn log() {
            tracing::info!(target: "first_elsewhere", "reached");
        }
        let capture = Capture::new();
        let _on = capture.install();
        std::thread::spawn(log).join().unwrap();
        log();
        assert_eq!(capture.events().len(), 1);
    }
}
