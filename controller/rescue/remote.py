"""The shell the rescue runs on a node, as POSIX sh snippets (no attendee input in any of them).

Paths are the playbook's defaults (``playbooks/roles/node_agent/defaults``):
the agent's config in /etc/labfleet-agent, its log in /var/log/labfleet-agent,
the supervisor at /usr/local/sbin/labfleet-agent-supervisor on hosts without
systemd (the local fleet), the ``labfleet-agent`` unit otherwise.
"""

from __future__ import annotations

SUPERVISOR = "/usr/local/sbin/labfleet-agent-supervisor"
CONFIG = "/etc/labfleet-agent/agent.toml"
LOG = "/var/log/labfleet-agent/agent.log"
READINESS = "/var/lib/labfleet-agent/readiness.json"
PIDFILE = "/var/lib/labfleet-agent/supervisor.pid"
UNIT = "labfleet-agent"
# pgrep -f pattern of the agent's command line; the brackets keep it from matching the shell running it.
AGENT_ARGV = f"[l]abfleet-agent run --config {CONFIG}"

# The agent's lab cgroup parent and attendee user, from its config (defaults as node_agent/config.py).
_SETTINGS = (f"P=$(sed -n 's/^lab_cgroup_parent *= *\"\\(.*\\)\"/\\1/p' {CONFIG} 2>/dev/null); P=${{P:-labfleet}}; "
             f"U=$(sed -n 's/^attendee_user *= *\"\\(.*\\)\"/\\1/p' {CONFIG} 2>/dev/null); U=${{U:-class}}; ")
# The directory of the labs' pids controller (cgroup v2 unified, or v1's pids hierarchy).
_LABS_DIR = ('if [ -f /sys/fs/cgroup/cgroup.controllers ]; then D=/sys/fs/cgroup/$P; '
             'else D=/sys/fs/cgroup/pids/$P; fi; ')

INIT = f"if [ -x {SUPERVISOR} ]; then echo supervisor; else echo systemd; fi"

DIAGNOSTICS = {
    "agent_status": {
        # The supervisor's `status` without its Python start: it runs while it holds the flock on its pidfile.
        "supervisor": f"if [ -e {PIDFILE} ] && ! flock -n -s {PIDFILE} true; then echo \"running $(cat {PIDFILE})\"; "
                      f"else echo 'not running'; fi; echo; pgrep -a -f -- '{AGENT_ARGV}' | sed 's/^/agent /'; "
                      f"for p in $(pgrep -f -- '{AGENT_ARGV}'); do "
                      "echo \"agent $p state $(sed -n 's/^State:[[:space:]]*//p' /proc/$p/status)\"; done",
        "systemd": f"systemctl status {UNIT} --no-pager -n 0",
    },
    "agent_log": {
        "supervisor": f"tail -n 60 {LOG}",
        "systemd": f"journalctl -u {UNIT} -n 60 --no-pager",
    },
    "process_tree": "ps -eo pid,ppid,user,stat,pcpu,rss,etimes,args --forest | head -n 200",
    "load": "cat /proc/loadavg; nproc",
    "memory": "head -n 5 /proc/meminfo",
    "lab_cgroups": _SETTINGS + _LABS_DIR + 'echo "parent $D"; for g in "$D"/*/; do [ -f "$g/pids.current" ] || continue; '
                   'echo "$(basename "$g") pids=$(cat "$g/pids.current") max=$(cat "$g/pids.max" 2>/dev/null)"; done; '
                   'echo "attendee $U processes=$(pgrep -c -U "$U" 2>/dev/null || echo 0)"',
    "kernel_log": "dmesg 2>/dev/null | tail -n 40 || echo '(kernel log not readable)'",
}

# Runaway: a lab cgroup at 90 % of its pids ceiling or past its memory ceiling's high mark, and the
# attendee's processes outside any lab cgroup past ``limit`` (a fork bomb in the login session).
# Stop everything first (a fork bomb cannot outrun SIGSTOP), then SIGKILL; a few rounds, bounded.
KILL_RUNAWAY = _SETTINGS + _LABS_DIR + """
for g in "$D"/*/; do
  [ -f "$g/pids.current" ] || continue
  cur=$(cat "$g/pids.current"); max=$(cat "$g/pids.max" 2>/dev/null || echo max)
  high=$(grep -s '^oom_kill ' "$g/memory.events" | cut -d' ' -f2)
  if { [ "$max" != max ] && [ "$cur" -ge $((max * 9 / 10)) ]; } || [ "${high:-0}" -gt 0 ]; then
    if [ -f "$g/cgroup.kill" ]; then echo 1 > "$g/cgroup.kill"; else
      for i in 1 2 3; do for p in $(cat "$g/cgroup.procs"); do kill -KILL "$p" 2>/dev/null; done; done; fi
    echo "killed lab cgroup $(basename "$g") (pids=$cur max=$max oom_kills=${high:-0})"
  fi
done
n=$(pgrep -c -U "$U" 2>/dev/null || echo 0)
if [ "$n" -gt %(limit)d ]; then
  for i in 1 2 3 4 5; do pkill -STOP -U "$U"; pkill -KILL -U "$U"; sleep 0.2; done
  echo "killed $n processes of attendee $U (fork bomb outside the labs, more than %(limit)d)"
fi
echo "runaway check done"
"""

RESTART = {
    # A SIGSTOPped agent ignores SIGTERM until continued: continue it, kill it, then let the supervisor
    # (started when it is not running) start a fresh one.
    "supervisor": f"for p in $(pgrep -f -- '{AGENT_ARGV}'); do kill -CONT $p; kill -KILL $p; done; "
                  f"{SUPERVISOR} restart",  # stop (if running) and start in one Python process
    "systemd": f"systemctl kill -s KILL {UNIT}; systemctl reset-failed {UNIT}; systemctl restart {UNIT} && "
               f"systemctl is-active {UNIT}",
}

# The diagnostics bundle's files from the node (over SSH when its agent is silent).
BUNDLE_FILES = {
    "agent.log": f"tail -n 2000 {LOG} 2>/dev/null || journalctl -u {UNIT} -n 2000 --no-pager",
    "readiness.json": f"cat {READINESS}",
    "system-facts.txt": "uname -a; echo; cat /etc/os-release; echo; cat /proc/loadavg; head -n 5 /proc/meminfo; "
                        "echo; df -h / 2>/dev/null; echo; ip -brief address 2>/dev/null",
    "agent.toml": f"cat {CONFIG}",
    "processes.txt": DIAGNOSTICS["process_tree"],
}
