%% idle_actor_bytes: spawn 1,000,000 idle processes (each blocked in receive) and measure how
%% much the VM grew: its resident set from /proc/self/statm (the figure compared with ours),
%% and erlang:memory(total) for reference. The pids are not kept, so the list holding them
%% does not count; the processes die with the VM. seconds: from the first spawn until every
%% process has reached its receive, as actor_bench.c times its idle actors' inits.
-module(idle_actor_bytes).
-export([run/0]).

-define(N, 1000000).

run() ->
    erlang:garbage_collect(),
    Rss0 = rss(),
    Mem0 = erlang:memory(total),
    T0 = erlang:monotonic_time(),
    spawn_idle(?N),
    settle(erlang:monotonic_time(millisecond) + actor_bench:timeout_ms()),
    T1 = erlang:monotonic_time(),
    Rss1 = rss(),
    Mem1 = erlang:memory(total),
    #{n => ?N,
      seconds => erlang:convert_time_unit(T1 - T0, native, nanosecond) / 1.0e9,
      rss_bytes => Rss1 - Rss0,
      memory_bytes => Mem1 - Mem0}.

spawn_idle(0) -> ok;
spawn_idle(K) ->
    spawn(fun idle/0),
    spawn_idle(K - 1).

idle() ->
    receive
        stop -> ok
    end.

%% Wait until every new process has run up to its receive and the run queues are empty.
settle(Deadline) ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> exit({timeout, idle_actor_bytes});
                false ->
                    timer:sleep(10),
                    settle(Deadline)
            end
    end.

rss() ->
    {ok, Statm} = file:read_file("/proc/self/statm"),
    [_Size, Resident | _] = binary:split(Statm, <<" ">>, [global]),
    binary_to_integer(Resident) * page_size().

page_size() ->
    list_to_integer(string:trim(os:cmd("getconf PAGESIZE"))).
