# The serving study on a fresh H200 (serve-study.sh: scenarios/seed-serve.toml, four backends,
# both seed shapes, then explain), then what the lease leaves to the agreement run (agreement.sh:
# its fa3 steps first, vLLM's client against attnbench with token-id and with text prompts on one
# fa3 server with one API-server process). One job inside one 30-minute lease with staging:
#   STUDY_LIMIT_S=1140 EXPLAIN_S=60 AGREEMENT_LIMIT_S=420 bash scripts/device/launch.sh study-then-agreement.sh 530
# Results: serve-study.sh's (/tmp/res/serve/, /tmp/res/explain/, /tmp/res/manifest.json) and
# agreement.sh's (/tmp/res/agreement/, /tmp/res/proc-cpu.csv).
STUDY_LIMIT_S="${STUDY_LIMIT_S:-1140}" EXPLAIN_S="${EXPLAIN_S:-60}" bash scripts/device/serve-study.sh
AGREEMENT_LIMIT_S="${AGREEMENT_LIMIT_S:-420}" bash scripts/device/agreement.sh
