%% actor_bench: the Erlang side of the actor suite (the Savina micro-benchmarks), run by
%% scripts/bench next to our tests/bench/actor_bench.c with the same parameters.
%% See /work/shared/BENCHMARKS.md.
%%
%%   erl +S 2 +P 4194304 -noshell -pa DIR -run actor_bench main \
%%       -extra [--json] [--verbose] [--iterations N] BENCH...
%%
%% BENCH is pingpong, counting, threadring, big, fjcreate, fjthrput, skynet, idle_actor_bytes
%% or all. Method (Savina's): run each bench 12 times, drop the runs outside +-20 % of the
%% median, report the median of the rest. idle_actor_bytes is one measurement, since memory
%% that a run frees is not given back to the OS and would hide the next run's growth; run it
%% in a fresh VM (scripts/bench does).
%%
%% +P: the default process limit (262,144) is too small for skynet and idle_actor_bytes.
%% Every wait is bounded (120 s); a bench that overruns prints an error and the VM exits 1.
-module(actor_bench).
-export([main/0, main/1, timeout_ms/0]).

-define(BENCHES, [pingpong, counting, threadring, big, fjcreate, fjthrput, skynet,
                  idle_actor_bytes]).

%% How long any one wait of any bench may take.
timeout_ms() -> 120000.

%% From -run actor_bench main -extra ARGS: the arguments come after -extra.
main() -> main(init:get_plain_arguments()).

main(Args) ->
    try
        Opts = parse(Args, #{json => false, iterations => 12, benches => []}),
        Benches = case maps:get(benches, Opts) of
                      [] -> ?BENCHES;
                      Bs -> lists:reverse(Bs)
                  end,
        lists:foreach(fun(B) -> bench(B, Opts) end, Benches)
    of
        ok -> halt(0)
    catch
        throw:{usage, Msg} ->
            io:format(standard_error, "actor_bench: ~s~n", [Msg]),
            halt(2);
        Class:Reason:Stack ->
            io:format(standard_error, "actor_bench: ~p:~p~n~p~n", [Class, Reason, Stack]),
            halt(1)
    end.

parse([], Opts) -> Opts;
parse(["--json" | T], Opts) -> parse(T, Opts#{json := true});
parse(["--verbose" | T], Opts) -> parse(T, Opts#{verbose => true});
parse(["--iterations", N | T], Opts) ->
    case catch list_to_integer(N) of
        I when is_integer(I), I > 0 -> parse(T, Opts#{iterations := I});
        _ -> throw({usage, "--iterations needs a positive integer"})
    end;
parse(["all" | T], Opts) -> parse(T, Opts#{benches := lists:reverse(?BENCHES)});
parse([B | T], Opts = #{benches := Bs}) ->
    Atom = list_to_atom(B),
    case lists:member(Atom, ?BENCHES) of
        true -> parse(T, Opts#{benches := [Atom | Bs]});
        false -> throw({usage, "unknown bench or option: " ++ B})
    end.

bench(idle_actor_bytes, Opts) ->
    #{n := N, seconds := S, rss_bytes := Rss, memory_bytes := Mem} = idle_actor_bytes:run(),
    emit(Opts, idle_actor_bytes, N, S, 1, 1,
         [{"bytes_per_actor", fmt_num(Rss / N)},
          {"measure", "\"rss\""},
          {"memory_total_bytes_per_actor", fmt_num(Mem / N)}]);
bench(B, Opts = #{iterations := Iters}) ->
    Times = [once(B) || _ <- lists:seq(1, Iters)],
    case maps:get(verbose, Opts, false) of
        true -> io:format(standard_error, "~s runs (s): ~w~n", [B, Times]);
        false -> ok
    end,
    {Median, Kept} = savina_median(Times),
    emit(Opts, B, B:n(), Median, Iters, Kept, []).

%% One run, timed inside a fresh process: Savina makes fresh actors for each iteration, and
%% a fresh process starts with nothing left over from the runs before. That process may take
%% bursts of replies (fjcreate's 40,000), so its queue is off the heap, the documented setting
%% for such a process: with an on-heap queue every minor GC rescans the whole backlog, and
%% fjcreate measured 5-10x slower and erratic here, a cost of the queue mode and not of the
%% work being measured.
once(B) ->
    Fun = fun() ->
                  T0 = erlang:monotonic_time(),
                  ok = B:run(),
                  T1 = erlang:monotonic_time(),
                  exit({done, erlang:convert_time_unit(T1 - T0, native, nanosecond) / 1.0e9})
          end,
    {Pid, Ref} = spawn_opt(Fun, [monitor, {message_queue_data, off_heap}]),
    receive
        {'DOWN', Ref, process, Pid, {done, Seconds}} -> Seconds;
        {'DOWN', Ref, process, Pid, Reason} -> exit({B, Reason})
    after 2 * timeout_ms() ->
        exit(Pid, kill),
        exit({timeout, B})
    end.

%% Savina's filter: keep the runs within +-20 % of the median, report their median. Runs that
%% fall in two clusters far apart can leave none (the median of an even count lies between
%% them); then the plain median stands, with kept = 0 to say so.
savina_median(Times) ->
    M = median(Times),
    case [T || T <- Times, T >= 0.8 * M, T =< 1.2 * M] of
        [] -> {M, 0};
        Kept -> {median(Kept), length(Kept)}
    end.

median(L) ->
    S = lists:sort(L),
    N = length(S),
    case N rem 2 of
        1 -> lists:nth(N div 2 + 1, S);
        0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
    end.

emit(#{json := true}, B, N, S, Iters, Kept, Extra) ->
    Fields = [{"suite", "\"actor\""}, {"bench", [$", atom_to_list(B), $"]},
              {"impl", "\"erlang\""}, {"n", integer_to_list(N)},
              {"seconds", float_to_list(S, [{decimals, 7}, compact])},
              {"ops_per_s", integer_to_list(round(N / S))},
              {"iterations", integer_to_list(Iters)}, {"kept", integer_to_list(Kept)},
              {"schedulers", integer_to_list(erlang:system_info(schedulers_online))}]
        ++ Extra,
    Body = lists:join(",", [["\"", K, "\":", V] || {K, V} <- Fields]),
    io:format("{~s}~n", [Body]);
emit(_, B, N, S, Iters, Kept, Extra) ->
    io:format("~-17s n=~-9w ~12.6f s ~12w ops/s  (~w of ~w runs kept)~s~n",
              [B, N, S, round(N / S), Kept, Iters,
               [[" ", K, "=", V] || {K, V} <- Extra]]).

fmt_num(X) -> float_to_list(float(X), [{decimals, 1}, compact]).
