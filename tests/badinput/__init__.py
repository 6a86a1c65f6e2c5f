"""The bad-input table (issue 15): every way a new user or a hostile client can get input wrong, as data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input_table.py     # the table + "N tried / N passed"
    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/unit/test_bad_input_table.py -q

`table.py` runs the cases (the real CLI in-process, the real server over loopback HTTP), `cli_cases.py`,
`cli_more_cases.py` and `serve_cases.py` hold them.
"""
