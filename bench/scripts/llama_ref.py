"""llama.cpp's figure for `warren-bench infer`: greedy generation of the same GGUF file from the
same prompt in the model's ChatML template, timed as warren's executor is (prompt evaluation
included). Prints one JSON line per round: {"tokens": N, "secs": S}.

Usage: python llama_ref.py MODEL.gguf PROMPT TOKENS ROUNDS THREADS
(python from scripts/setup-llama.sh, which installs llama-cpp-python from PyPI by name)."""
import json
import sys
import time

from llama_cpp import Llama

model, prompt, tokens, rounds, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False, seed=0)
text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
ids = llm.tokenize(text.encode(), add_bos=False, special=True)
for _ in range(rounds):
    llm.reset()
    started = time.perf_counter()
    n = 0
    for tok in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, reset=True):
        if tok == llm.token_eos() or n >= tokens:
            break
        n += 1
        if n >= tokens:
            break
    secs = time.perf_counter() - started
    print(json.dumps({"tokens": n, "secs": secs}), flush=True)
