%% threadring: 100 processes in a ring pass a token 100,000 times.
-module(threadring).
-export([n/0, run/0]).

-define(ACTORS, 100).
-define(N, 100000).

n() -> ?N.

run() ->
    Parent = self(),
    Pids = [spawn(fun() -> member(Parent) end) || _ <- lists:seq(1, ?ACTORS)],
    [First | _] = Pids,
    link_ring(Pids, First),
    First ! {token, ?N},
    R = receive
            done -> ok
        after actor_bench:timeout_ms() -> {timeout, threadring}
        end,
    [P ! stop || P <- Pids],
    case R of
        ok -> ok;
        _ -> exit(R)
    end.

link_ring([Last], First) -> Last ! {next, First};
link_ring([P, Q | T], First) ->
    P ! {next, Q},
    link_ring([Q | T], First).

member(Parent) ->
    receive
        {next, Next} -> loop(Parent, Next)
    end.

loop(Parent, Next) ->
    receive
        {token, 0} ->
            Parent ! done,
            loop(Parent, Next);
        {token, K} ->
            Next ! {token, K - 1},
            loop(Parent, Next);
        stop -> ok
    end.
