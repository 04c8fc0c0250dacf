#!/bin/bash
# ns-net-2, step namespaces: what the attendee types, non-interactively.
set -euo pipefail
sudo ip netns add "${LAB_PREFIX}vnet0"
sudo ip netns add "${LAB_PREFIX}vnet10"
ip netns list | grep "^${LAB_PREFIX}"
ls -li /run/netns/ | grep "${LAB_PREFIX}"
