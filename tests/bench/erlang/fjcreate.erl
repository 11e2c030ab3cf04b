%% fjcreate: spawn 40,000 processes and send each one message; each computes sin(37.2)^2,
%% reports to the parent and exits. The argument travels in the message, so the compiler
%% cannot fold the computation away.
-module(fjcreate).
-export([n/0, run/0]).

-define(N, 40000).

n() -> ?N.

run() ->
    Parent = self(),
    spawn_all(Parent, ?N),
    wait(?N).

spawn_all(_, 0) -> ok;
spawn_all(Parent, K) ->
    Pid = spawn(fun() -> worker(Parent) end),
    Pid ! {work, 37.2},
    spawn_all(Parent, K - 1).

worker(Parent) ->
    receive
        {work, X} ->
            S = math:sin(X),
            R = S * S,
            true = R >= 0.0,
            Parent ! done
    end.

wait(0) -> ok;
wait(K) ->
    receive
        done -> wait(K - 1)
    after actor_bench:timeout_ms() -> exit({timeout, fjcreate, K})
    end.
