# labfleet: show the instructor's answer to `lab help`, and their messages, once, on the attendee's next prompt.
# Installed by playbooks/roles/node_agent as /etc/profile.d/labfleet-help.sh; see docs/help.md.
# The agent (root) writes one line "SERIAL<TAB>TEXT" to its notice file; this hook only reads it,
# remembers the last serial shown in ~/.labfleet-help-seen and prints a new one once.
# Interactive bash only: other shells and scripts are left alone.

if [ -n "${BASH_VERSION-}" ]; then
  case $- in
    *i*)
      __labfleet_help_notice() {
        local file="${LABFLEET_HELP_NOTICE:-/run/labfleet-agent/help-notice}" seen="$HOME/.labfleet-help-seen"
        local line="" serial text
        [ -f "$file" ] && [ -r "$file" ] || return 0
        IFS= read -r line <"$file" || [ -n "$line" ] || return 0
        serial=${line%%$'\t'*}
        [ -n "$serial" ] && [ "$serial" != "$line" ] || return 0
        [ "$serial" = "${__labfleet_help_seen-}" ] && return 0
        if [ -z "${__labfleet_help_seen+x}" ] && [ -f "$seen" ] && [ ! -L "$seen" ]; then
          IFS= read -r __labfleet_help_seen <"$seen" || true
          [ "$serial" = "$__labfleet_help_seen" ] && return 0
        fi
        __labfleet_help_seen=$serial
        text=${line#*$'\t'}
        text=${text//[[:cntrl:]]/?}
        case $serial in
          msg-*)
            # A message or hint from the instructor: `lab messages --new` prints the unread ones and the
            # agent marks them read; without the agent, the announcement itself.
            command -v lab >/dev/null 2>&1 && lab messages --new 2>/dev/null || printf '[lab message] %s\n' "${text:0:1100}" ;;
          *) printf '[lab help] %s\n' "${text:0:600}" ;;
        esac
        [ -L "$seen" ] || printf '%s\n' "$serial" >"$seen" 2>/dev/null || true
      }
      case ";${PROMPT_COMMAND-};" in
        *";__labfleet_help_notice;"*) ;;
        *) PROMPT_COMMAND="__labfleet_help_notice${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
      esac
      ;;
  esac
fi
