"""2. Cross-process one-way latency (`cross_process/latency.rs`, group `latency_64B`)."""

from ..criterion import Criterion
from ..doc import Doc
from ..fmt import judge, ns, ratio, within

GROUP = "latency_64B"
PEERS = ("floor", "shmstream", "unix_socket", "iceoryx2")


def write(doc: Doc, crit: Criterion, iceoryx2_note: str) -> None:
    w = doc.w
    w("## 2. Cross-process one-way latency, 64 bytes (`bench-peers/benches/cross_process/latency.rs`, `latency_64B`)")
    w()
    w("Half the round trip of a ping-pong between two processes, both spinning.")
    w("Floor: two atomics on their own cache lines of a shared mapping.")
    w()
    doc.header("peer", "one-way latency", "vs floor")
    floor = crit.median(GROUP, "floor")
    for peer in PEERS:
        t = crit.median(GROUP, peer)
        if t is None and peer == "iceoryx2":
            doc.row("iceoryx2", f"skipped: {iceoryx2_note}", "")
            continue
        doc.row(peer, ns(t), ratio(t, floor))
    s = crit.median(GROUP, "shmstream")
    doc.goal("latency within 1.5x of the floor", judge(s, floor, within(1.5)), f"{ratio(s, floor)} of the floor")
    doc.goal("issue 24: latency within 2x of the floor", judge(s, floor, within(2)), f"{ratio(s, floor)} of the floor")
    w()
