using System.Text.Json;

namespace Qwen3VL.Server;

/// <summary>An error answered in OpenAI's shape: <c>{"error": {"message", "type", "param", "code"}}</c> with an HTTP status.</summary>
internal sealed class ApiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    internal int Status { get; } = status;
    internal string Type { get; } = type;
    internal string? Param { get; } = param;
    internal string? Code { get; } = code;

    internal static ApiError BadRequest(string message, string? param = null, string? code = null) => new(400, message, "invalid_request_error", param, code);

    internal void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", Message);
        w.WriteString("type", Type);
        if (Param is null) w.WriteNull("param");
        else w.WriteString("param", Param);
        if (Code is null) w.WriteNull("code");
        else w.WriteString("code", Code);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
