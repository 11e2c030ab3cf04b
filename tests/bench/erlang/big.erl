%% big: 120 processes; each sends 20,000 pings to random peers (never itself), waiting for
%% each pong before the next ping, and answers the pings of the others meanwhile.
%% The peer is drawn with the same generator as actor_bench.c (Park-Miller's minimal
%% standard, whose products stay within Erlang's small integers), so both do the same work.
-module(big).
-export([n/0, run/0]).

-define(ACTORS, 120).
-define(PINGS, 20000).

n() -> ?ACTORS * ?PINGS.

run() ->
    Parent = self(),
    Pids = [spawn(fun() -> start(Parent, I) end) || I <- lists:seq(0, ?ACTORS - 1)],
    Peers = list_to_tuple(Pids),
    [P ! {start, Peers} || P <- Pids],
    R = wait(?ACTORS),
    [P ! stop || P <- Pids],
    R.

wait(0) -> ok;
wait(K) ->
    receive
        done -> wait(K - 1)
    after actor_bench:timeout_ms() -> exit({timeout, big, K})
    end.

start(Parent, I) ->
    receive
        {start, Peers} ->
            Seed = I * 7919 + 1,
            loop(Parent, Peers, I, ping(Peers, I, Seed), ?PINGS)
    end.

%% Send a ping to a random peer other than I; returns the next seed.
ping(Peers, I, Seed) ->
    Next = Seed * 48271 rem 2147483647,
    R = Next rem (?ACTORS - 1),
    Peer = case R >= I of
               true -> R + 1;
               false -> R
           end,
    element(Peer + 1, Peers) ! {ping, self()},
    Next.

loop(Parent, Peers, I, Seed, Left) ->
    receive
        {ping, From} ->
            From ! pong,
            loop(Parent, Peers, I, Seed, Left);
        pong when Left =:= 1 ->
            Parent ! done,
            loop(Parent, Peers, I, Seed, 0);
        pong ->
            loop(Parent, Peers, I, ping(Peers, I, Seed), Left - 1);
        stop -> ok
    end.
