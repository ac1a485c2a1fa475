using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Qwen3VL.Native.Processing.Templates;

/// <summary>
/// Serializes JSON like Python's <c>json.dumps(x, ensure_ascii=False)</c>, which is what the <c>tojson</c> filter of
/// transformers' chat templates produces: separators <c>", "</c> and <c>": "</c>, keys in document order, non-ASCII
/// kept, floats in Python <c>repr</c> form (<c>1.0</c>, <c>1e+20</c>, <c>1e-05</c>).
/// </summary>
public static class PythonJson
{
    /// <summary>Serializes a JSON value.</summary>
    public static string Serialize(JsonElement value)
    {
        var sb = new StringBuilder();
        Write(sb, value);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, JsonElement v)
    {
        switch (v.ValueKind)
        {
            case JsonValueKind.Object:
                sb.Append('{');
                bool first = true;
                foreach (JsonProperty p in v.EnumerateObject())
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }
                    first = false;
                    WriteString(sb, p.Name);
                    sb.Append(": ");
                    Write(sb, p.Value);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                int i = 0;
                foreach (JsonElement e in v.EnumerateArray())
                {
                    if (i++ > 0)
                    {
                        sb.Append(", ");
                    }
                    Write(sb, e);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(sb, v.GetString()!);
                break;
            case JsonValueKind.Number:
                sb.Append(FormatNumber(v.GetRawText()));
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            default:
                sb.Append("null");
                break;
        }
    }

    private static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Integers are kept as written; other numbers are printed like Python's <c>repr(float)</c>.</summary>
    internal static string FormatNumber(string raw)
    {
        if (raw.AsSpan().IndexOfAny(".eE") < 0)
        {
            return raw;
        }
        double d = double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
        if (double.IsInfinity(d))
        {
            return d > 0 ? "Infinity" : "-Infinity";
        }
        // Shortest round-trip digits and decimal exponent.
        string shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int ePos = shortest.IndexOfAny(['E', 'e']);
        string mantissa = ePos < 0 ? shortest : shortest[..ePos];
        int exp10 = ePos < 0 ? 0 : int.Parse(shortest[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        int dot = mantissa.IndexOf('.');
        string digits = dot < 0 ? mantissa : mantissa.Remove(dot, 1);
        int pointPos = (dot < 0 ? mantissa.Length : dot) + exp10; // digits[0..pointPos) is the integer part
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0')
        {
            lead++;
            pointPos--;
        }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0)
        {
            digits = "0";
            pointPos = 1;
        }
        string sign = d < 0 || (d == 0 && double.IsNegative(d)) ? "-" : "";
        if (pointPos > -4 && pointPos <= 16)
        {
            string s;
            if (pointPos <= 0)
            {
                s = "0." + new string('0', -pointPos) + digits;
            }
            else if (pointPos >= digits.Length)
            {
                s = digits + new string('0', pointPos - digits.Length) + ".0";
            }
            else
            {
                s = digits[..pointPos] + "." + digits[pointPos..];
            }
            return sign + s;
        }
        int e = pointPos - 1;
        string m = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
        return sign + m + "e" + (e < 0 ? "-" : "+") + Math.Abs(e).ToString("00", CultureInfo.InvariantCulture);
    }
}
