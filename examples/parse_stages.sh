# Sourced by the recipes' run.sh after they set $dir and $here (Kaldi's parse_options.sh, for stages):
# reads --stage N, --stop-stage N and --dir DIR from the command line into stage, stop_stage and dir,
# and defines `run N`, true when stage N lies in [stage, stop_stage].
stage=0
stop_stage=100
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1 (use --stage N, --stop-stage N, --dir DIR)" >&2; exit 2 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
