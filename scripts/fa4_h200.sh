#!/usr/bin/env bash
# flash-attn 4 on an offline GPU server with a 64 MiB-per-call transfer limit, and the measurements made with it.
#
# On a machine with internet (once):
#   bash scripts/fa4_h200.sh prepare        # downloads the wheels (Python 3.12, x86_64) into .fa4a .fa4b .fa4c .fa4d
#                                           # (git-ignored via .git/info/exclude; at most 34.5 MB each: with this
#                                           # repository's 24 MB tree a call refused 34.6 MB more and took 34.5)
# On the GPU server, in consecutive calls (each folder carried by its own call, the machine kept warm), then the runs:
#   bash scripts/fa4_h200.sh stage .fa4a ; ... stage .fa4b ; ... stage .fa4d ; ... stage .fa4c
#   bash scripts/fa4_h200.sh install        # joins the 92 MB cu13 wheel, checks its sha256, pip installs --no-deps
#   SDTP_GIT_COMMIT=<commit> bash scripts/fa4_h200.sh checks      # check_fa4_gpu.py + check_decode_gpu.py, decode bench
#   SDTP_GIT_COMMIT=<commit> bash scripts/fa4_h200.sh profile     # SDPA and flash-attn 4, r = 0.9 and 0.8, 32K + 128K
# `profile` fills one JSON ($OUT/$NAME.json, NAME=latency_fa4_h200, a copy kept in /root/prof) and resumes per
# (length, backend) on the same machine: call it again until its header says complete (the whole grid takes about
# 15 minutes: 32K 4 min, 128K about 11, each backend about 5.5; a call may last 10). LENGTHS="131072" NAME=latency_fa4_h200_128k: one length alone.
set -euo pipefail
cd "$(dirname "$0")/.."
CU13=nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
out=${OUT:-runs/fa4_h200}
state=/root/prof
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
case ${1:?prepare, stage DIR, install, checks or profile} in
  prepare)
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 -d "$tmp" flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 \
      nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 \
      apache-tvm-ffi torch-c-dlpack-ext quack-kernels
    mkdir -p .fa4a .fa4b .fa4c .fa4d
    sha256sum "$tmp/$CU13" | cut -d' ' -f1 > .fa4c/cu13.sha256
    (cd "$tmp" && split -n 3 -d -a 1 "$CU13" cu13.part && rm "$CU13")
    mv "$tmp"/cu13.part0 "$tmp"/flash_attn_4-*.whl .fa4a/
    mv "$tmp"/cu13.part1 .fa4b/
    mv "$tmp"/nvidia_cutlass_dsl_libs_base-*.whl "$tmp"/torch_c_dlpack_ext-*.whl "$tmp"/apache_tvm_ffi-*.whl .fa4d/
    mv "$tmp"/cu13.part2 "$tmp"/*.whl .fa4c/
    rmdir "$tmp" 2>/dev/null || ls "$tmp"
    grep -qx '/.fa4\[abcd\]/' .git/info/exclude 2>/dev/null || echo '/.fa4[abcd]/' >> .git/info/exclude
    du -sb .fa4a .fa4b .fa4c .fa4d ;;
  stage)
    mkdir -p /root/fa4 && cp "${2:?stage .fa4a|.fa4b|.fa4c|.fa4d}"/* /root/fa4/ && ls /root/fa4 ;;
  install)
    cd /root/fa4
    cat cu13.part0 cu13.part1 cu13.part2 > "$CU13"
    test "$(sha256sum "$CU13" | cut -d' ' -f1)" = "$(tr -d ' \n' < cu13.sha256)" || { echo "cu13 wheel: sha256 mismatch" >&2; exit 1; }
    rm -f cu13.part*
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir /root/fa4/*.whl  # no --target: it breaks cutlass's .pth
    cd - > /dev/null
    python3 -m pip install -q --no-deps --no-build-isolation -e .
    python3 -c "import flash_attn.cute; print('flash-attn 4 ok')" ;;
  checks)
    mkdir -p "$out"
    python3 scripts/check_fa4_gpu.py > "$out/check_fa4_gpu.txt" 2>&1 || { cat "$out/check_fa4_gpu.txt"; exit 1; }
    python3 scripts/check_decode_gpu.py > "$out/check_decode_gpu.txt" 2>&1 || { cat "$out/check_decode_gpu.txt"; exit 1; }
    python3 scripts/decode_bench.py --lengths 4096 32768 131072 --decode-attn matmul flash_attention_4 \
      --new-tokens 32 > "$out/decode_bench.txt" 2>&1
    python3 scripts/decode_bench.py --lengths 131072 --variants sdtp --decode-attn matmul flash_attention_4 \
      --new-tokens 32 --breakdown > "$out/decode_breakdown_128k.txt" 2>&1
    tail -n 3 "$out"/*.txt ;;
  profile)
    mkdir -p "$out" "$state"
    name=${NAME:-latency_fa4_h200}
    json=$state/$name.json
    read -r -a lengths <<< "${LENGTHS:-32768 131072}"
    args=(--model qwen2-7b-random --lengths "${lengths[@]}" --variants dense sdtp sdtp@0.8 --engines hf sdtp
          --attn sdpa flash_attention_4 --new-tokens 128 --repeats 3)
    if [ -f "$json" ]; then timeout "${SDTP_PROFILE_TIMEOUT:-570}" python3 -m sdtp_lib profile "${args[@]}" --resume "$json" || true
    else timeout "${SDTP_PROFILE_TIMEOUT:-570}" python3 -m sdtp_lib profile "${args[@]}" --out "$json" || true; fi
    cp "$state/$name".* "$out"/
    python3 -c "import json, sys; print('complete' if json.load(open(sys.argv[1]))['header'].get('complete') else 'incomplete: call again')" "$json" ;;
  *) echo "prepare, stage DIR, install, checks or profile" >&2; exit 2 ;;
esac
