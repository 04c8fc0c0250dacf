"""SSH rescue of nodes whose agent is silent, with Fabric (docs/rescue.md).

``target.resolve`` finds how provisioning reached a node (address, port, user,
the controller's copy of the key, and the host key it recorded); ``ssh.connect``
opens a Fabric connection that refuses any host key but that one (paramiko's
RejectPolicy over a HostKeys built from the record); ``steps.rescue_host`` runs
the steps (diagnose, kill runaway lab processes, restart the agent, wait until
it is online again), each timed and inside one time bound per host;
``service.run_rescue`` runs a request's hosts with a bound on how many at
once, stores each host's transcript and result, and audits every step.
"""
