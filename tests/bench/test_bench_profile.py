"""The profile summary of bench/profile.py: inclusive shares from py-spy's collapsed stacks."""

from bench.profile import inclusive_shares


def test_inclusive_shares_count_a_function_once_per_stack():
    collapsed = "\n".join([
        "main (a.py:1);step (b.py:10);adam (c.py:5) 6",
        "main (a.py:1);step (b.py:12);step (b.py:30) 3",  # recursion: counted once
        "main (a.py:1);forward (d.py:7) 1",
    ])
    shares, total = inclusive_shares(collapsed)
    assert total == 10
    assert shares["main (a.py)"] == 10
    assert shares["step (b.py)"] == 9
    assert shares["adam (c.py)"] == 6 and shares["forward (d.py)"] == 1
