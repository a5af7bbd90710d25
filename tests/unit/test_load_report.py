"""`make load`'s table from Locust's CSV columns (scripts/load/report.py): exact text, the all-routes
row last, errors listed, and the exit status."""

import sys

from scripts.load import report

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
STATS = "\n".join(
    [
        HEADER,
        "GET,/models,23,0,980,989.37,193.3,1897.1,7925.0,2.4129561918686155,0.0,"
        "980,1300,1400,1500,1600,1700,1900,1900,1900,1900,1900",
        'POST,"/models/{model}/predict [breast-cancer, 1 row]",1204,3,12,20.5,4.1,1510.2,315.7,40.15,0.1,'
        "12,15,18,20,31,64,120,350,1500,1500,1500",
        "GET,/health,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A",
        ",Aggregated,1227,3,12,39.2,4.1,1897.1,457.0,42.56,0.1,12,16,19,22,40,110,900,1700,1900,1900,1900",
    ]
)
FAILURES = "\n".join(
    [
        "Method,Name,Error,Occurrences,First Seen,Last Seen",
        'POST,"/models/{model}/predict [breast-cancer, 1 row]",status 503: no loadable version,1,1.0,1.0',
        'POST,"/models/{model}/predict [breast-cancer, 1 row]","ConnectionResetError(104, \'reset\')",2,1.0,2.0',
    ]
)


def test_the_table_has_one_row_per_route_sorted_then_all_routes():
    assert report.format_table(STATS) == "\n".join(
        [
            "| route | requests | req/s | p50 ms | p95 ms | p99 ms | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| `GET /health` | 0 | 0.0 | — | — | — | 0 |",
            "| `GET /models` | 23 | 2.4 | 980 | 1,700 | 1,900 | 0 |",
            "| `POST /models/{model}/predict [breast-cancer, 1 row]` | 1,204 | 40.1 | 12 | 64 | 350 | 3 |",
            "| **all routes** | 1,227 | 42.6 | 12 | 110 | 1,700 | 3 |",
        ]
    )


def test_failures_are_listed_most_frequent_first():
    assert report.format_failures(FAILURES) == "\n".join(
        [
            "2 x POST /models/{model}/predict [breast-cancer, 1 row]: ConnectionResetError(104, 'reset')",
            "1 x POST /models/{model}/predict [breast-cancer, 1 row]: status 503: no loadable version",
        ]
    )
    assert report.format_failures("Method,Name,Error,Occurrences,First Seen,Last Seen\n") == ""


def test_a_run_with_a_failure_exits_1_and_prints_the_errors_under_the_table(tmp_path, capsys):
    (tmp_path / "run_stats.csv").write_text(STATS)
    (tmp_path / "run_failures.csv").write_text(FAILURES)
    assert report.main([str(tmp_path / "run")]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(report.format_table(STATS) + "\n\nErrors:\n2 x POST")


def test_a_clean_run_exits_0_and_an_empty_one_1(tmp_path):
    clean = STATS.replace(",1204,3,", ",1204,0,").replace(",Aggregated,1227,3,", ",Aggregated,1227,0,")
    (tmp_path / "clean_stats.csv").write_text(clean)
    text, status = report.report(tmp_path / "clean")
    assert status == 0 and text == report.format_table(clean)

    (tmp_path / "empty_stats.csv").write_text(
        HEADER + "\n,Aggregated,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    )
    text, status = report.report(tmp_path / "empty")
    assert status == 1 and text.endswith("No request was made.")


def test_usage_without_a_prefix(capsys):
    assert report.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_load_runs_signed_in_with_the_given_header_or_the_sign_in_commands_token():
    from scripts.load.run import signed_in_headers

    given = {"LOAD_HEADERS": '{"authorization": "tok-1", "X-Extra": "1"}'}
    assert signed_in_headers(given, "false") == {"authorization": "tok-1", "X-Extra": "1"}  # the command is not run
    printed = f"{sys.executable} -c 'print(\"tok-2\")'"
    assert signed_in_headers({"LOAD_HEADERS": '{"X-Extra": "1"}'}, printed) == {
        "X-Extra": "1",
        "Authorization": "tok-2",
    }
    assert signed_in_headers({}, None) is None
    assert signed_in_headers({}, f"{sys.executable} -c 'import sys; sys.exit(3)'") is None
    assert signed_in_headers({}, f"{sys.executable} -c 'print()'") is None  # printed no token
