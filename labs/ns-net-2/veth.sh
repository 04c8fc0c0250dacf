#!/bin/bash
# ns-net-2, step veth: what the attendee types, non-interactively.
set -euo pipefail
s="${LAB_PREFIX}vnet0" c="${LAB_PREFIX}vnet10" vs="${LAB_PREFIX}veth0" vc="${LAB_PREFIX}veth10"
sudo ip -n "$s" link add "$vs" type veth peer name "$vc" netns "$c"
sudo ip -n "$s" addr add 10.11.12.1/24 dev "$vs"
sudo ip -n "$c" addr add 10.11.13.1/24 dev "$vc"
sudo ip -n "$s" link set "$vs" up
sudo ip -n "$c" link set "$vc" up
sudo ip -n "$s" route add 10.11.13.0/24 dev "$vs"
sudo ip -n "$c" route add 10.11.12.0/24 dev "$vc"
sudo ip netns exec "$c" ping -c1 -W2 10.11.12.1
