%% fjthrput: 60 processes each receive 10,000 messages, sent round-robin; each message costs
%% one sin(37.2)^2. Each worker reports to the parent after its last message and exits.
%% The workers keep their queues off the heap, as a process that receives bursts should: with
%% the default on-heap queue each minor GC rescans the backlog of up to 10,000 messages, and
%% this bench measured 0.2-1.6 s per run instead of a steady 0.14 s.
-module(fjthrput).
-export([n/0, run/0]).

-define(ACTORS, 60).
-define(PER, 10000).

n() -> ?ACTORS * ?PER.

run() ->
    Parent = self(),
    Pids = [spawn_opt(fun() -> worker(Parent, ?PER) end, [{message_queue_data, off_heap}])
            || _ <- lists:seq(1, ?ACTORS)],
    send_rounds(Pids, ?PER),
    wait(?ACTORS).

send_rounds(_, 0) -> ok;
send_rounds(Pids, K) ->
    send_round(Pids),
    send_rounds(Pids, K - 1).

send_round([]) -> ok;
send_round([P | T]) ->
    P ! {work, 37.2},
    send_round(T).

worker(Parent, 0) -> Parent ! done;
worker(Parent, K) ->
    receive
        {work, X} ->
            S = math:sin(X),
            R = S * S,
            true = R >= 0.0,
            worker(Parent, K - 1)
    end.

wait(0) -> ok;
wait(K) ->
    receive
        done -> wait(K - 1)
    after actor_bench:timeout_ms() -> exit({timeout, fjthrput, K})
    end.
