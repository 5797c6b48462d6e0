"""The official `openai` client against a warren node's OpenAI-compatible API.

Run by tests/tests/openai.rs: `python openai_e2e.py API_ADDR TOKEN OPERATORS_JSON`. The node at
API_ADDR serves MiniLM (`minilm`) and has added SmolLM2 (`smollm2`), which only other nodes
(OPERATORS_JSON: their peer ids) serve. Prints one JSON line of findings; any failed check raises.
"""

import base64
import json
import struct
import sys
import time
import urllib.error
import urllib.request

import openai

addr, token, operators = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = f"http://{addr}/openai/v1"
client = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=120)
found = {"openai": openai.__version__}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# Models.
ids = [m.id for m in client.models.list()]
found["models"] = ids
check("smollm2" in ids and "minilm" in ids, f"models listed: {ids}")

# A streamed chat, answered by a remote operator (this node does not serve SmolLM2).
chat = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
t0 = time.time()
stream = client.chat.completions.create(
    model="smollm2", messages=chat, max_tokens=24, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
roles, pieces, finish, usage, arrivals = [], [], None, None, []
for chunk in stream:
    check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object}")
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            pieces.append(c.delta.content)
            arrivals.append(round(time.time() - t0, 3))
        if c.finish_reason:
            finish = c.finish_reason
streamed = "".join(pieces)
found["stream"] = {"pieces": len(pieces), "text": streamed, "finish": finish,
                   "first_piece_s": arrivals[0] if arrivals else None,
                   "last_piece_s": arrivals[-1] if arrivals else None,
                   "usage": usage.model_dump() if usage else None}
check(roles == ["assistant"], f"role once, first: {roles}")
check(len(pieces) >= 3, f"streamed token by token: {pieces}")
check("Paris" in streamed, f"a coherent answer: {streamed!r}")
check(finish in ("stop", "length"), f"finish_reason {finish}")
check(usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0, f"usage {usage}")

# The raw stream: server-sent events ending with [DONE].
req = urllib.request.Request(
    f"{base}/chat/completions",
    data=json.dumps({"model": "smollm2", "messages": chat, "max_tokens": 8,
                     "temperature": 0, "stream": True}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(req, timeout=120) as r:
    check(r.headers["Content-Type"].startswith("text/event-stream"), r.headers["Content-Type"])
    events = [l for l in r.read().decode().split("\n\n") if l.strip()]
data = [e for e in events if e.startswith("data: ")]
check(data[-1] == "data: [DONE]", f"last event {data[-1]!r}")
first = json.loads(data[0][6:])
check(first["choices"][0]["delta"].get("role") == "assistant", f"first chunk {first}")
last = json.loads(data[-2][6:])
check(last["choices"][0]["finish_reason"] in ("stop", "length"), f"last chunk {last}")
found["raw_stream_events"] = len(data)

# A non-streamed chat, greedy: the same text as the stream; then with a stop string.
whole = client.chat.completions.create(model="smollm2", messages=chat, max_tokens=24, temperature=0)
check(whole.object == "chat.completion", whole.object)
text = whole.choices[0].message.content
check(text == streamed, f"non-streamed {text!r} == streamed {streamed!r}")
u = whole.usage
check(u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens > 0, f"usage {u}")
warren = whole.model_extra.get("warren") or {}
check(warren.get("operator") in operators, f"answered by a remote operator: {warren}")
found["chat"] = {"text": text, "finish": whole.choices[0].finish_reason, "usage": u.model_dump(),
                 "operator": warren.get("operator")}
stopped = client.chat.completions.create(
    model="smollm2", messages=chat, max_tokens=24, temperature=0, stop=["Paris"],
)
st = stopped.choices[0]
check(st.finish_reason == "stop" and "Paris" not in st.message.content
      and text.startswith(st.message.content), f"stop string: {st}")
found["chat_stop"] = st.message.content
short = client.chat.completions.create(model="smollm2", messages=chat, max_tokens=2, temperature=0)
check(short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2, f"length: {short}")

# Text completions, whole and streamed.
comp = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6,
                                 temperature=0)
check(comp.object == "text_completion" and comp.choices[0].text, f"completion {comp}")
parts = [c.choices[0].text for c in client.completions.create(
    model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True)
    if c.choices]
check("".join(parts) == comp.choices[0].text, f"streamed completion {parts} vs {comp.choices[0].text!r}")
found["completion"] = comp.choices[0].text

# Embeddings: the SDK's default (base64) and float, against this node's local run.
texts = ["A cat sits on the mat.", "The stock market fell today.", "Un chat est assis."]
default = client.embeddings.create(model="minilm", input=texts)
floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
raw = urllib.request.Request(
    f"{base}/embeddings",
    data=json.dumps({"model": "minilm", "input": texts, "encoding_format": "base64"}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(raw, timeout=120) as r:
    b64 = json.loads(r.read())
decoded = [list(struct.unpack(f"<{len(base64.b64decode(d['embedding'])) // 4}f",
                              base64.b64decode(d["embedding"]))) for d in b64["data"]]
local_req = urllib.request.Request(
    f"http://{addr}/v1/embed",
    data=json.dumps({"model": "minilm", "texts": texts, "local": True}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(local_req, timeout=120) as r:
    local = json.loads(r.read())["vectors"]


def maxdiff(a, b):
    return max(abs(x - y) for va, vb in zip(a, b) for x, y in zip(va, vb))


default_v = [d.embedding for d in default.data]
float_v = [d.embedding for d in floats.data]
check(len(default_v) == 3 and len(default_v[0]) == 384, "three 384-dim vectors")
diffs = {"sdk_default": maxdiff(default_v, local), "float": maxdiff(float_v, local),
         "base64": maxdiff(decoded, local)}
found["embedding_max_diff_vs_local"] = diffs
check(all(d < 1e-4 for d in diffs.values()), f"embeddings match the local run: {diffs}")
check(maxdiff(decoded, float_v) < 1e-6, "base64 and float agree")

# Bad requests: OpenAI-shaped 4xx errors.
def raw_status(path, body, auth=True):
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {token}"
    try:
        urllib.request.urlopen(urllib.request.Request(f"{base}{path}", data=body, headers=headers),
                               timeout=60)
    except urllib.error.HTTPError as e:
        err = json.loads(e.read())["error"]
        check(set(err) >= {"message", "type", "param", "code"}, f"error shape {err}")
        return e.code, err
    raise AssertionError(f"{path} accepted {body!r}")


errors = {}
try:
    client.chat.completions.create(model="no-such-model", messages=chat, max_tokens=4)
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    check(e.status_code == 404 and e.code == "model_not_found", f"unknown model: {e}")
    errors["unknown_model"] = [e.status_code, e.code]
code, err = raw_status("/chat/completions", b'{"model": "smollm2", "messages": [')
check(code == 400 and err["type"] == "invalid_request_error", f"malformed JSON: {code} {err}")
errors["malformed_json"] = [code, err["type"]]
code, err = raw_status("/chat/completions", json.dumps({"model": "smollm2", "messages": chat}).encode(),
                       auth=False)
check(code == 401, f"missing token: {code} {err}")
errors["missing_token"] = [code, err["code"]]
try:
    openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    errors["wrong_key"] = [e.status_code, e.code]
try:
    client.chat.completions.create(model="smollm2", messages=chat, max_tokens=4, temperature=7)
    raise AssertionError("temperature 7 accepted")
except openai.BadRequestError as e:
    errors["bad_temperature"] = [e.status_code, e.param]
try:
    client.embeddings.create(model="smollm2", input="x")
    raise AssertionError("embeddings from a generation model accepted")
except openai.BadRequestError as e:
    errors["wrong_kind"] = [e.status_code, e.param]
found["errors"] = errors
print(json.dumps(found))
