"""The checker must catch what it claims to: feed it histories with known faults."""

from __future__ import annotations

from tests.chaos.checker import Ack, Delivery, History, Sent, Stored, check, longest_ack_gap


def _history(n: int = 3) -> tuple[History, dict[str, list[Stored]]]:
    h = History()
    stored = []
    for seq in range(1, n + 1):
        msg_id = f"m{seq}"
        h.sent.append(Sent("a", "a", "r", msg_id, f"t{seq}", float(seq)))
        h.acks.append(Ack("a", "r", msg_id, seq, 1, seq + 0.1))
        stored.append(Stored(seq, msg_id, "a", f"t{seq}"))
        for client in ("a", "b"):
            h.deliveries.append(Delivery(client, "r", seq, msg_id, "a", f"t{seq}", 1, seq + 0.2))
    h.joined_from["a"]["r"] = 0
    h.joined_from["b"]["r"] = 0
    return h, {"r": stored}


def test_a_clean_history_passes() -> None:
    h, stored = _history()
    report = check(h, stored)
    assert report.ok, report.describe()
    assert (report.acked, report.stored, report.delivered) == (3, 3, 6)


def test_an_acked_message_missing_from_the_store_is_lost() -> None:
    h, stored = _history()
    report = check(h, {"r": stored["r"][:2]})
    assert report.lost == 1 and "acked but lost" in report.counts


def test_an_ack_at_the_wrong_seq_is_lost() -> None:
    h, stored = _history()
    h.acks.append(Ack("a", "r", "m3", 2, 2, 9.0))
    report = check(h, stored)
    assert "one id acked with two seqs" in report.counts
    assert "one seq acked for two ids" in report.counts


def test_a_redelivered_message_is_a_duplicate() -> None:
    h, stored = _history()
    h.deliveries.append(Delivery("b", "r", 2, "m2", "a", "t2", 2, 9.0))
    report = check(h, stored)
    assert report.duplicates_delivered == 1


def test_out_of_order_and_missed_deliveries_are_caught() -> None:
    h, stored = _history()
    h.deliveries = [d for d in h.deliveries if not (d.client == "b" and d.seq == 2)]
    h.deliveries.append(Delivery("b", "r", 2, "m2", "a", "t2", 2, 9.0))
    h.deliveries = [d for d in h.deliveries if not (d.client == "a" and d.seq == 3)]
    report = check(h, stored)
    assert report.out_of_order == 1
    assert report.missed == 1


def test_clients_that_disagree_with_the_store_are_caught() -> None:
    h, stored = _history()
    h.deliveries[0] = Delivery("a", "r", 1, "m2", "a", "t2", 1, 1.2)
    assert "clients disagree with the store" in check(h, stored).counts


def test_stored_twice_and_phantoms_are_caught() -> None:
    h, stored = _history()
    extra = [Stored(4, "m1", "a", "t1"), Stored(5, "ghost", "x", "boo")]
    report = check(h, {"r": stored["r"] + extra})
    assert {"stored twice", "stored but never sent"} <= set(report.counts)


def test_longest_ack_gap_measures_the_quiet_time() -> None:
    h, _ = _history()
    assert longest_ack_gap(h, 0.0, 10.0) == 10.0 - 3.1
    assert round(longest_ack_gap(h, 1.0, 3.5), 6) == 1.0
