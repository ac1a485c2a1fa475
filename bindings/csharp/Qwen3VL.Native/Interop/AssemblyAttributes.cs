// The generated P/Invokes are blittable and marshal SafeHandles and strings in managed code, like LibraryImport;
// disabling runtime marshalling guarantees the runtime adds no marshalling of its own (and keeps NativeAOT simple).
[assembly: System.Runtime.CompilerServices.DisableRuntimeMarshalling]
