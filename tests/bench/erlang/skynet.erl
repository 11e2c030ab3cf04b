%% skynet: a 10-ary tree of processes down to 1,000,000 leaves (1,111,111 processes in all);
%% each leaf sends its number up, each inner process sums its ten children's answers.
-module(skynet).
-export([n/0, run/0]).

-define(LEAVES, 1000000).
-define(SUM, 499999500000).

n() -> ?LEAVES.

run() ->
    Parent = self(),
    spawn(fun() -> node(Parent, 0, ?LEAVES) end),
    receive
        {sum, ?SUM} -> ok;
        {sum, Other} -> exit({wrong_sum, Other})
    after actor_bench:timeout_ms() -> exit({timeout, skynet})
    end.

node(Parent, Num, 1) -> Parent ! {sum, Num};
node(Parent, Num, Size) ->
    Self = self(),
    Child = Size div 10,
    spawn_children(Self, Num, Child, 0),
    Parent ! {sum, collect(10, 0)}.

spawn_children(_, _, _, 10) -> ok;
spawn_children(Self, Num, Child, I) ->
    spawn(fun() -> node(Self, Num + I * Child, Child) end),
    spawn_children(Self, Num, Child, I + 1).

collect(0, Sum) -> Sum;
collect(K, Sum) ->
    receive
        {sum, S} -> collect(K - 1, Sum + S)
    end.
