"""Drives one Python peer client (openai-python or LiteLLM's Router) through a call plan.

    python driver.py <openai|litellm> <plan.json> <out.json>

The plan is written by the Rust orchestrator: every call
starts at its own `start_ms` after the simulator's clock is reset (open loop: a call never
waits for an earlier one), runs under `asyncio.wait_for(budget_ms)`, and is a non-streaming
chat completion with an `x-call-id` header. The client is configured as a user with that
budget would: the plan's `max_retries`, a request timeout equal to the budget, everything
else at the library's defaults.

Output: {"client", "version", "calls": [{"id", "start_ms", "end_ms", "ok", "error"}], ...};
call times are relative to t0, taken right after `POST /_start` answered. Extra fields, for
checking the driver itself: "setup_ms" (imports and the client's construction), "warmup_ms"
(see warm_up), "loop_lag_ms" {"max", "p99"} (how late the event loop ran during the calls:
a large lag means the client's own CPU work delayed the calls' timers). Exits 0 even when
calls fail; stdout stays quiet.
"""

import time

T_PROCESS = time.monotonic()  # setup_ms counts from here: imports and the client's construction

import os  # noqa: E402
import sys  # noqa: E402

# No network here but loopback: nothing may look anything up on the internet, at import
# time (LiteLLM's model cost map, Anthropic beta headers, blog posts) or later. These
# must be set before litellm is imported.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"
os.environ["LITELLM_LOCAL_BLOG_POSTS"] = "True"
os.environ["LITELLM_DISABLE_LATEST_RELEASE_CHECK"] = "True"
os.environ["LITELLM_LOG"] = "CRITICAL"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
# The simulator is on loopback: never send it through a proxy from the environment.
_no_proxy = "127.0.0.1,localhost,::1"
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(x for x in (os.environ.get(_var), _no_proxy) if x)

import asyncio  # noqa: E402
import gc  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import urllib.parse  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import version as pkg_version  # noqa: E402
from typing import NoReturn  # noqa: E402


# Quiet: no library warnings on stderr (e.g. a coroutine LiteLLM leaves unawaited when a call
# is cancelled at its budget); stderr is for the driver's own fatal errors.
warnings.simplefilter("ignore")


def fail(msg: str) -> NoReturn:
    print(f"driver: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def short_error(e: BaseException) -> str:
    """Exception class name plus HTTP status when the exception carries one."""
    name = type(e).__name__
    status = getattr(e, "status_code", None)
    if status is None:
        status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"{name} {status}"
    return name


def post_start(base_url: str) -> None:
    """POST {base_url without /v1}/_start; the simulator resets its clock and counters."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    u = urllib.parse.urlsplit(root + "/_start")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        conn.request("POST", u.path, body=b"", headers={"content-length": "0"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            fail(f"POST {root}/_start answered {resp.status}")
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# Clients. Each builder returns (version, call(model, messages, headers, timeout_s), close).


def build_openai(plan: dict, budget_s: float):
    import openai

    # One client, one connection pool (the SDK's default pool: 1,000 connections, 100 kept
    # alive), shared by all calls. max_retries and timeout as a user with this budget sets them.
    client = openai.AsyncOpenAI(
        base_url=plan["base_url"],
        api_key=plan["api_key"],
        max_retries=int(plan["max_retries"]),
        timeout=budget_s,
    )

    async def call(model, messages, headers, timeout_s):
        c = client if timeout_s == budget_s else client.with_options(timeout=timeout_s)
        return await c.chat.completions.create(model=model, messages=messages, extra_headers=headers)

    async def close():
        await client.close()

    return pkg_version("openai"), call, close


def build_litellm(plan: dict, budget_s: float):
    import litellm

    # Quiet. No logging callback is registered by default (nor by the Router): none is added,
    # none removed. The offline settings at the top keep it off the internet.
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.telemetry = False  # gone in recent releases (the proxy's telemetry is opt-in); harmless
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpx2", "openai"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.CRITICAL)
        lg.propagate = False
        lg.handlers = [logging.NullHandler()]

    models = sorted({c["model"] for c in plan["calls"]})
    # A real user calls a model LiteLLM knows the price of. The simulator's model names are
    # unknown to it, and for an unknown model every answer sets off a search through the
    # whole cost map (a zero-cost diagnostic, several ms a call): give them a known model's
    # prices, as a known model would have.
    priced = dict(litellm.model_cost.get("gpt-4o-mini") or {
        "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "max_tokens": 16384,
        "max_input_tokens": 128000, "max_output_tokens": 16384})
    priced.update(litellm_provider="openai", mode="chat")
    litellm.register_model({m: dict(priced) for m in models if m not in litellm.model_cost})
    model_list = [
        {
            "model_name": m,
            "litellm_params": {"model": f"openai/{m}", "api_base": plan["base_url"], "api_key": plan["api_key"]},
        }
        for m in models
    ]
    # LiteLLM's defaults otherwise (cooldowns, allowed fails, retry policy), as a new user has them.
    router = litellm.Router(model_list=model_list, num_retries=int(plan["max_retries"]), timeout=budget_s)

    async def call(model, messages, headers, timeout_s):
        extra = {} if timeout_s == budget_s else {"timeout": timeout_s}
        return await router.acompletion(model=model, messages=messages, extra_headers=headers, **extra)

    async def close():
        for fn in ("aclose", "close"):
            f = getattr(router, fn, None)
            if f is not None:
                r = f()
                if asyncio.iscoroutine(r):
                    await r
                break

    return pkg_version("litellm"), call, close


BUILDERS = {"openai": build_openai, "litellm": build_litellm}


# ---------------------------------------------------------------------------------------
# Warm-up. Both libraries do much of their setup on the first call (lazy imports, pydantic
# validators, LiteLLM's provider config and its SDK client): a few hundred milliseconds that
# a long-running application pays once. The builder is run a second time against a tiny
# server of our own, and that client makes a few calls, before the measured run; the
# simulator sees none of it.

_WARM_BODY = json.dumps({
    "id": "chatcmpl-warm", "object": "chat.completion", "created": 0, "model": "warm",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


_warm_writers: set = set()


async def _warm_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _warm_writers.add(writer)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                         % len(_WARM_BODY) + _WARM_BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
        pass  # a cancelled handler ends quietly (3.11's streams log a cancelled one as an error)
    finally:
        _warm_writers.discard(writer)
        writer.close()


async def warm_up(client_name: str, plan: dict, budget_s: float, rounds: int = 3) -> None:
    server = await asyncio.start_server(_warm_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    warm_plan = dict(plan, base_url=f"http://127.0.0.1:{port}/v1")
    _, call, close = BUILDERS[client_name](warm_plan, budget_s)
    models = sorted({c["model"] for c in plan["calls"]})
    try:
        for r in range(rounds):
            await asyncio.gather(*(
                asyncio.wait_for(call(m, [{"role": "user", "content": "warm-up"}], {"x-call-id": f"warm-{r}"},
                                      budget_s), 30.0)
                for m in models))
    finally:
        try:
            await asyncio.wait_for(close(), 5.0)
        except BaseException:  # noqa: BLE001 - closing is best effort
            pass
        server.close()
        for w in list(_warm_writers):  # connections the warm-up clients kept alive
            w.close()
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------


async def lag_monitor(samples: list, stop: asyncio.Event, period: float = 0.005) -> None:
    """How late the event loop wakes a 5 ms sleeper: the driver's own share of any delay."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(period)
        samples.append((loop.time() - t - period) * 1000.0)


async def run(client_name: str, plan: dict, t_setup0: float) -> dict:
    calls = plan["calls"]
    if not calls:
        fail("the plan has no calls")
    # The client's timeout is the first call's budget (a plan's budgets are normally all the
    # same); a call with another budget gets its own timeout.
    budget0_s = calls[0]["budget_ms"] / 1000.0
    version, call, close = BUILDERS[client_name](plan, budget0_s)
    setup_ms = (time.monotonic() - t_setup0) * 1000.0
    warm_ms = 0.0
    if os.environ.get("PEERS_WARMUP", "1") != "0":
        t_warm = time.monotonic()
        await warm_up(client_name, plan, budget0_s)
        warm_ms = (time.monotonic() - t_warm) * 1000.0
    # A full collection now, as a long-running process would long have had: right after the
    # imports, CPython's next full collection comes soon and walks the whole heap (LiteLLM's
    # is large: 100-250 ms with the event loop stopped), which would land inside the run.
    gc.collect()

    loop = asyncio.get_running_loop()
    # _start is a blocking request made before any call exists: nothing else runs meanwhile.
    post_start(plan["base_url"])
    t0 = time.monotonic()
    t0_loop = loop.time()  # the same instant on the loop's clock, which schedules the calls

    results = [None] * len(calls)
    lag: list = []
    stop = asyncio.Event()
    monitor = asyncio.create_task(lag_monitor(lag, stop))

    async def one(i: int, c: dict) -> None:
        delay = t0_loop + c["start_ms"] / 1000.0 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        start = time.monotonic()
        ok, error = False, None
        headers = {"x-call-id": str(c["id"])}
        messages = [{"role": "user", "content": f"call {c['id']}"}]
        budget_s = c["budget_ms"] / 1000.0
        try:
            await asyncio.wait_for(call(c["model"], messages, headers, budget_s), budget_s)
            ok = True
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - any failure is a failed call, recorded
            error = short_error(e)
        end = time.monotonic()
        results[i] = {
            "id": c["id"],
            "start_ms": round((start - t0) * 1000.0, 3),
            "end_ms": round((end - t0) * 1000.0, 3),
            "ok": ok,
            "error": error,
        }

    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    stop.set()
    await monitor

    try:
        await asyncio.wait_for(close(), 5.0)
    except BaseException:  # noqa: BLE001 - closing is best effort
        pass

    lag.sort()
    return {
        "client": client_name,
        "version": version,
        "calls": results,
        "setup_ms": round(setup_ms, 1),
        "warmup_ms": round(warm_ms, 1),
        "loop_lag_ms": {
            "max": round(lag[-1], 3) if lag else 0.0,
            "p99": round(lag[min(len(lag) - 1, int(len(lag) * 0.99))], 3) if lag else 0.0,
        },
    }


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in BUILDERS:
        fail(f"usage: {sys.argv[0]} <{'|'.join(BUILDERS)}> <plan.json> <out.json>")
    client_name, plan_path, out_path = sys.argv[1:]
    with open(plan_path) as f:
        plan = json.load(f)
    out = asyncio.run(run(client_name, plan, T_PROCESS))
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, out_path)
    sys.stdout.flush()
    sys.stderr.flush()
    # Libraries may leave worker threads behind (LiteLLM's logging pool): don't wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
