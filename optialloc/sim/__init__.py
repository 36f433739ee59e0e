"""What-if simulation: replay a workload through optialloc and through baselines.

`engine` is the discrete-event loop every scheduler runs on (same clock, same
event order, same accounting); `baselines` are today's teuthology and the
textbook schedulers; `adapters` are the simulated ports that let the real
`Dispatcher` run inside the loop; `metrics` scores a finished run;
`workload`, `swf` and `generate` produce the jobs; `report` writes tables and
plots.
"""
