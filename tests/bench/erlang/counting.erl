%% counting: a producer sends 1,000,000 increments to a counter, then asks for the count.
-module(counting).
-export([n/0, run/0]).

-define(N, 1000000).

n() -> ?N.

run() ->
    Parent = self(),
    Counter = spawn(fun() -> counter(0) end),
    Producer = spawn(fun() -> produce(Parent, Counter) end),
    receive
        {done, Producer, ?N} -> ok;
        {done, Producer, Other} -> exit({wrong_count, Other})
    after actor_bench:timeout_ms() -> exit({timeout, counting})
    end.

produce(Parent, Counter) ->
    send_incr(Counter, ?N),
    Counter ! {get, self()},
    receive
        {count, C} -> Parent ! {done, self(), C}
    end.

send_incr(_, 0) -> ok;
send_incr(Counter, K) ->
    Counter ! incr,
    send_incr(Counter, K - 1).

counter(C) ->
    receive
        incr -> counter(C + 1);
        {get, From} -> From ! {count, C}
    end.
