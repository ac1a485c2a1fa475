namespace Qwen3VL.Server;

/// <summary>The queue was full when a request arrived (429).</summary>
internal sealed class QueueFullException() : Exception("The server is busy: the request queue is full. Retry later.");

/// <summary>The server is shutting down (503).</summary>
internal sealed class ServerStoppingException() : Exception("The server is shutting down.");

/// <summary>
/// A fixed set of reusable items (the model's contexts, as chat sessions) handed to requests strictly first in, first
/// out: a request either takes a free item at once (when nobody waits), waits at the end of a bounded queue, or is
/// turned away when the queue is full. A waiter that gives up (its token is cancelled) leaves the queue. Thread-safe.
/// </summary>
internal sealed class ContextPool<T> where T : class
{
    private readonly Lock _gate = new();
    private readonly Stack<T> _free;
    private readonly LinkedList<TaskCompletionSource<T>> _waiters = new();
    private readonly int _capacity;
    private readonly HashSet<Lease> _leases = [];
    private Action<T>? _retire; // set by Close: items given back afterwards go here instead of the free stack
    private bool _stopping;
    private long _completed, _cancelled, _rejected, _failed;

    internal ContextPool(IEnumerable<T> items, int maxQueue)
    {
        _free = new Stack<T>(items);
        _capacity = _free.Count;
        MaxQueue = maxQueue;
    }

    internal int MaxQueue { get; }

    /// <summary>Takes an item, waiting in line when none is free.</summary>
    /// <exception cref="QueueFullException">The queue holds <see cref="MaxQueue"/> waiters already.</exception>
    /// <exception cref="ServerStoppingException">The pool is stopping.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled while waiting (counted as cancelled).</exception>
    internal async ValueTask<Lease> AcquireAsync(CancellationToken cancellationToken)
    {
        TaskCompletionSource<T> waiter;
        LinkedListNode<TaskCompletionSource<T>> node;
        lock (_gate)
        {
            if (_stopping)
            {
                _rejected++;
                throw new ServerStoppingException();
            }
            if (_waiters.Count == 0 && _free.Count > 0) return new Lease(this, _free.Pop());
            if (_waiters.Count >= MaxQueue)
            {
                _rejected++;
                throw new QueueFullException();
            }
            waiter = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            node = _waiters.AddLast(waiter);
        }
        using (cancellationToken.Register(() =>
        {
            lock (_gate)
            {
                if (node.List is null) return; // already handed an item (or failed by Stop)
                _waiters.Remove(node);
            }
            waiter.TrySetCanceled(cancellationToken);
        }))
        {
            try
            {
                return new Lease(this, await waiter.Task.ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref _cancelled);
                throw;
            }
        }
    }

    /// <summary>Turns away every waiter and every later request (shutdown).</summary>
    internal void Stop()
    {
        List<TaskCompletionSource<T>> waiters;
        lock (_gate)
        {
            _stopping = true;
            waiters = [.. _waiters];
            _rejected += waiters.Count;
            _waiters.Clear();
        }
        foreach (TaskCompletionSource<T> w in waiters) w.TrySetException(new ServerStoppingException());
    }

    internal void CountCompleted() => Interlocked.Increment(ref _completed);
    internal void CountCancelled() => Interlocked.Increment(ref _cancelled);
    internal void CountFailed() => Interlocked.Increment(ref _failed);
    internal void CountRejected() => Interlocked.Increment(ref _rejected);

    internal ServerCounters Snapshot()
    {
        lock (_gate)
        {
            int free = _free.Count;
            return new ServerCounters(_capacity - free, _waiters.Count, Interlocked.Read(ref _completed), Interlocked.Read(ref _cancelled),
                Interlocked.Read(ref _rejected), Interlocked.Read(ref _failed), free);
        }
    }

    /// <summary>How long each item handed out now has been held, longest first.</summary>
    internal TimeSpan[] LeaseAges()
    {
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_gate)
        {
            return _leases.Select(l => System.Diagnostics.Stopwatch.GetElapsedTime(l.Started, now)).OrderDescending().ToArray();
        }
    }

    /// <summary>
    /// Stops the pool (as <see cref="Stop"/>) and hands every item to <paramref name="retire"/> (shutdown: dispose it):
    /// the free ones now, each one still leased when its lease ends. Later calls do nothing.
    /// </summary>
    internal void Close(Action<T> retire)
    {
        ArgumentNullException.ThrowIfNull(retire);
        Stop();
        List<T> free;
        lock (_gate)
        {
            if (_retire is not null) return;
            _retire = retire;
            free = [.. _free];
            _free.Clear();
        }
        foreach (T item in free) retire(item);
    }

    private void Release(T item)
    {
        while (true)
        {
            TaskCompletionSource<T>? next = null;
            Action<T>? retire;
            lock (_gate)
            {
                retire = _retire;
                if (retire is null)
                {
                    if (_waiters.First is not { } first)
                    {
                        _free.Push(item);
                        return;
                    }
                    _waiters.RemoveFirst();
                    next = first.Value;
                }
            }
            if (next is null)
            {
                retire!(item); // closed: the item goes when its lease ends
                return;
            }
            if (next.TrySetResult(item)) return; // the item passes straight to the oldest waiter
        }
    }

    /// <summary>An item held by one request; dispose to give it back (to the next waiter, if any).</summary>
    internal sealed class Lease : IDisposable
    {
        private ContextPool<T>? _pool;

        internal Lease(ContextPool<T> pool, T item)
        {
            _pool = pool;
            Item = item;
            lock (pool._gate) pool._leases.Add(this);
        }

        internal T Item { get; }

        /// <summary>When the item was handed out (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>).</summary>
        internal long Started { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _pool, null) is not { } pool) return;
            lock (pool._gate) pool._leases.Remove(this);
            pool.Release(Item);
        }
    }
}
