%% pingpong: two processes, 40,000 strictly sequential round trips.
-module(pingpong).
-export([n/0, run/0]).

-define(N, 40000).

n() -> ?N.

run() ->
    Parent = self(),
    Pong = spawn(fun pong/0),
    Ping = spawn(fun() -> ping(Parent, Pong, ?N) end),
    receive
        {done, Ping} -> ok
    after actor_bench:timeout_ms() -> exit({timeout, pingpong})
    end.

ping(Parent, Pong, 0) ->
    Pong ! stop,
    Parent ! {done, self()};
ping(Parent, Pong, K) ->
    Pong ! {ping, self()},
    receive
        pong -> ping(Parent, Pong, K - 1)
    end.

pong() ->
    receive
        {ping, From} ->
            From ! pong,
            pong();
        stop -> ok
    end.
