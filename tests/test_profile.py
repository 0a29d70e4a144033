"""tb.profile's reading of callgrind_annotate output (no simulation)."""

import pytest

from tb.profile import _inclusive

ANNOTATE = """\
--------------------------------------------------------------------------------
4,946,594,361 (100.0%)  PROGRAM TOTALS
   818,385,054 (16.54%)  ???:Vtop::eval_step() [/build/tandem_tb]
   804,797,977 (16.27%)  ???:Vtop___024root___eval(Vtop___024root*) [/build/tandem_tb]
   519,000,000 (10.49%)  ???:Vtop___024root___eval_phase__act(Vtop___024root*) [/build/tandem_tb]
"""


def test_inclusive_reads_exact_symbols():
    assert _inclusive(ANNOTATE, "PROGRAM TOTALS") == 4_946_594_361
    assert _inclusive(ANNOTATE, "Vtop::eval_step") == 818_385_054
    # the design's eval, not a function whose name merely starts with it
    assert _inclusive(ANNOTATE, "Vtop___024root___eval") == 804_797_977


def test_inclusive_missing_symbol_is_a_clear_error():
    with pytest.raises(SystemExit, match="no 'Vtop___024root___nba'"):
        _inclusive(ANNOTATE, "Vtop___024root___nba")
